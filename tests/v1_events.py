"""What the v1 code stored for an interaction, frozen here so tests can write it again.

Until `currency` was added, `Customer.InteractionRecorded` was class version 1: no `currency`,
no `class_version` in the stored state, `session_id` and `properties` sealed. Its events stay
in the store as written. To write such rows now, this keeps a copy of the v1 class and runs the
mappers of that time - the PersonalDataMapper (its code has not changed since) and, for rows
from before encryption existed, the library's plain Mapper - told only what differed then: the
class's topic and which of its fields were sealed. Everything else (JSON, header, key, nonce,
binding to the stream) is the production code's own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent

from adapters.personal_mapper import PersonalDataMapper
from domain.customer import Customer

V1_TOPIC = "domain.customer:Customer.InteractionRecorded"
V1_PERSONAL_FIELDS = ("session_id", "properties")


class InteractionRecordedV1(Aggregate.Event):
    """Customer.InteractionRecorded as the v1 code declared it."""

    event_id: str
    type: str
    occurred_at: datetime
    session_id: str | None
    channel: str | None
    properties: dict[str, Any]

    def apply(self, aggregate: Customer) -> None:
        aggregate.interaction_count += 1


def record_v1(
    customer: Customer,
    *,
    event_id: str,
    type: str,
    occurred_at: datetime,
    session_id: str | None,
    channel: str | None,
    properties: dict[str, Any],
    at: datetime,
) -> None:
    """Customer.record_interaction as the v1 code had it."""
    customer.trigger_event(
        InteractionRecordedV1,
        event_id=event_id,
        type=type,
        occurred_at=occurred_at,
        session_id=session_id,
        channel=channel,
        properties=properties,
        timestamp=at,
    )


def _as_v1(stored: StoredEvent, event: object) -> StoredEvent:
    # The copy cannot take the real topic (the library maps each topic to one class), so the
    # row gets it here; the sealed part is bound to the stream and version, not to the topic.
    if not isinstance(event, InteractionRecordedV1):
        return stored
    return StoredEvent(stored.originator_id, stored.originator_version, V1_TOPIC, stored.state)


class V1SealingMapper(PersonalDataMapper):
    """The PersonalDataMapper as it ran with the v1 event class."""

    @staticmethod
    def _split(event: object, state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        if isinstance(event, InteractionRecordedV1):
            return {k: state.pop(k) for k in V1_PERSONAL_FIELDS}, state
        return PersonalDataMapper._split(event, state)

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        return _as_v1(super().to_stored_event(domain_event), domain_event)


class V1PlainMapper(Mapper[UUID]):
    """The library's mapper, as the service stored events before encryption existed."""

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        return _as_v1(super().to_stored_event(domain_event), domain_event)
