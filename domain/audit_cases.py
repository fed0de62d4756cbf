"""The audit side's use cases: one customer's stored history, replayed as of a time or version.

Keys are read fresh for every request (never a cached one): an erasure made by another process
must show at once as null personal data, not after a cache entry expires.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.utils import get_topic

from domain.audit import ConsentRecord, Positioned, consent_at, profile_as_of
from domain.consent import ConsentPurpose
from domain.customer import Customer
from domain.export import export_document
from domain.ids import customer_uuid
from domain.ports import Clock, EventIndex, PersonalDataVault
from domain.rules import Rule, parse_rule
from domain.score import ScoreModel
from domain.segment import Segment

PAGE = 1_000
_SEGMENT_TOPICS = [get_topic(c) for c in (Segment.Defined, Segment.Redefined, Segment.Retired)]


class AuditCases(Application[UUID]):
    clock: Clock
    event_index: EventIndex
    vault: PersonalDataVault | None

    def history(self, customer_id: str, *, after: int = 0, limit: int = 100) -> list[Positioned]:
        """Up to `limit` events with versions above `after`, oldest first."""
        uid = self._fresh(customer_id)
        rows = self.event_index.select_stream(uid, after=after, limit=limit)
        return [(position, self.mapper.to_domain_event(stored)) for position, stored in rows]

    def customer_events(self, customer_id: str) -> list[Positioned]:
        """The whole stream, read in pages (an audit reads every event, not a snapshot)."""
        events: list[Positioned] = []
        while True:
            page = self.history(customer_id, after=len(events), limit=PAGE)
            events += page
            if len(page) < PAGE:
                return events

    def profile_as_of(
        self, customer_id: str, *, at: datetime | None = None, version: int | None = None
    ) -> Customer | None:
        return profile_as_of(self.customer_events(customer_id), at=at, version=version)

    def consent_at(self, customer_id: str, purpose: ConsentPurpose, at: datetime) -> ConsentRecord:
        return consent_at(self.customer_events(customer_id), purpose, at)

    def export(self, customer_id: str, model: ScoreModel) -> dict[str, Any] | None:
        return export_document(
            customer_id,
            self.customer_events(customer_id),
            segments=self.segment_rules(),
            model=model,
            now=self.clock(),
        )

    def segment_rules(self) -> dict[str, Rule]:
        """The live segments' rules, from the event store's segment events."""
        ids: dict[UUID, str] = {}
        rules: dict[str, Rule] = {}
        start = 1
        while True:
            page = self.recorder.select_notifications(
                start=start, limit=PAGE, topics=_SEGMENT_TOPICS
            )
            for n in page:
                event: Any = self.mapper.to_domain_event(n)
                if isinstance(event, Segment.Defined):
                    ids[event.originator_id] = event.segment_id
                segment_id = ids[event.originator_id]
                if isinstance(event, Segment.Retired):
                    rules.pop(segment_id, None)
                else:
                    rules[segment_id] = parse_rule(event.rule)
            if len(page) < PAGE:
                return rules
            start = page[-1].id + 1

    def customer_at(self, customer_id: str, version: int | None = None) -> Customer | None:
        try:
            return cast(Customer, self.repository.get(customer_uuid(customer_id), version=version))
        except AggregateNotFoundError:
            return None

    def _fresh(self, customer_id: str) -> UUID:
        uid = customer_uuid(customer_id)
        if self.vault is not None:
            self.vault.forget([uid])
        return uid
