"""The audit side (/audit/graphql): the immutable history, read from the event store only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.types import Info

from adapters.settings import RequestLimits
from api.consent_types import ConsentPurpose, ConsentState
from api.context import Context, EventStore
from api.scalars import JSON, Long, utc
from api.schema_options import ProfileSchema
from domain.audit import ConsentRecord
from domain.consent import ConsentState as DomainConsent
from domain.customer import Customer
from domain.errors import InvalidInput
from domain.event_json import ENVELOPE, event_data, plain
from domain.normalise import check_id, check_page, parse_utc
from domain.privacy import forgotten

MAX_PAGE = 1_000


@strawberry.type
class RecordedEvent:
    version: int
    position: Long | None
    type: str
    recorded_at: datetime
    occurred_at: datetime | None
    data: JSON
    personal_data_erased: bool = strawberry.field(
        description="True when the customer was erased: this event's personal fields read as "
        "null because the key that encrypted them is gone."
    )

    @classmethod
    def of(cls, position: int, event: Any) -> RecordedEvent:
        fields = {k: v for k, v in vars(event).items() if k not in ENVELOPE}
        occurred = fields.get("occurred_at")
        return cls(
            version=event.originator_version,
            position=Long(position),
            type=type(event).__name__,
            recorded_at=utc(event.timestamp),  # type: ignore[arg-type]
            occurred_at=utc(occurred) if isinstance(occurred, datetime) else None,
            data=JSON(event_data(event)),
            personal_data_erased=forgotten(event),
        )


@strawberry.type
class HistoryPage:
    events: list[RecordedEvent]
    has_next_page: bool


@strawberry.type
class AuditProfile:
    customer_id: strawberry.ID
    version: int
    traits: JSON
    consents: list[ConsentState]
    interaction_count: int
    erased: bool

    @classmethod
    def of(cls, customer_id: str, c: Customer) -> AuditProfile:
        return cls(
            customer_id=strawberry.ID(customer_id),
            version=c.version,
            traits=JSON(plain(dict(c.traits or {}))),
            consents=[_consent(s) for _, s in sorted((c.consents or {}).items())],
            interaction_count=c.interaction_count,
            erased=c.erased,
        )


def _consent(s: DomainConsent, record: ConsentRecord | None = None) -> ConsentState:
    return ConsentState(
        purpose=s.purpose,
        granted=s.granted,
        source=s.source,
        policy_version=s.policy_version,
        changed_at=utc(s.changed_at),
        event_version=record.version if record else None,
        event_position=Long(record.position) if record and record.position else None,
        recorded_at=utc(record.recorded_at) if record and record.recorded_at else None,
    )


def _store(info: Info[Context, None]) -> EventStore:
    store = info.context.services.audit
    assert store is not None, "audit side not wired"
    return store


@strawberry.type
class AuditQuery:
    @strawberry.field(
        description="Every stored event of the customer, oldest first. After erasure personal "
        "data reads as null, and the erasure event itself is readable."
    )
    async def history(
        self,
        info: Info[Context, None],
        customer_id: strawberry.ID,
        after: int | None = 0,
        first: int | None = 100,
    ) -> HistoryPage:
        check_id(customer_id, "customerId")
        # The contract's after: Int = 0, first: Int = 100: an explicit null is the default.
        after = 0 if after is None else after
        first = 100 if first is None else first
        check_page(first, MAX_PAGE)
        if after < 0:
            raise InvalidInput("after", f"is {after}; send a version, 0 for the start")
        rows = await _store(info).call(
            lambda app: app.history(str(customer_id), after=after, limit=first + 1)
        )
        events = [RecordedEvent.of(position, event) for position, event in rows[:first]]
        return HistoryPage(events=events, has_next_page=len(rows) > first)

    @strawberry.field(
        description="The profile as the service knew it at a time (events recorded at or "
        "before it) or at a version, rebuilt from the event store alone."
    )
    async def profile_as_of(
        self,
        info: Info[Context, None],
        customer_id: strawberry.ID,
        at: datetime | None = None,
        version: int | None = None,
    ) -> AuditProfile | None:
        check_id(customer_id, "customerId")
        if version is not None and version < 1:
            raise InvalidInput("version", f"is {version}; versions start at 1")
        when = parse_utc(at, "at") if at is not None else None
        customer = await _store(info).call(
            lambda app: app.profile_as_of(str(customer_id), at=when, version=version)
        )
        return None if customer is None else AuditProfile.of(str(customer_id), customer)

    @strawberry.field(
        description="Was this purpose consented at that instant, judged by the consent events' "
        "occurredAt (a late-recorded change counts from when it happened), and by which event? "
        "With no change by then: granted false, changedAt null (never stated)."
    )
    async def consent_at(
        self,
        info: Info[Context, None],
        customer_id: strawberry.ID,
        purpose: ConsentPurpose,
        at: datetime,
    ) -> ConsentState:
        check_id(customer_id, "customerId")
        when = parse_utc(at, "at")
        record = await _store(info).call(
            lambda app: app.consent_at(str(customer_id), purpose, when)
        )
        if record.state is None:
            return ConsentState(
                purpose=purpose, granted=False, source=None, policy_version=None, changed_at=None
            )
        return _consent(record.state, record)

    @strawberry.field(
        description="Right of access: everything held about the customer as one JSON document "
        "(traits, consents and their history, interactions, segments, score), built from the "
        "event store. Null for a customer never seen."
    )
    async def export(self, info: Info[Context, None], customer_id: strawberry.ID) -> JSON | None:
        check_id(customer_id, "customerId")
        model = info.context.services.settings.score_model
        document = await _store(info).call(lambda app: app.export(str(customer_id), model))
        return None if document is None else JSON(document)


def build_audit_schema(limits: RequestLimits | None = None) -> strawberry.Schema:
    return ProfileSchema(limits, query=AuditQuery)
