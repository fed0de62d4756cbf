"""The Customer aggregate: what a customer did and agreed to, as past-tense events.

The aggregate keeps only what its decisions need (traits, current consents, erasure), so its
snapshots stay small however long the history grows; interactions live in the events and in
the read models, not in the aggregate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.consent import ConsentModel, ConsentPurpose, ConsentState, tracking_allowed
from domain.currency import currency_code
from domain.ids import customer_uuid

# Looked up per interaction: an Enum's .value is a descriptor call, far slower than a str.
_ANALYTICS = ConsentPurpose.ANALYTICS.value


class Customer(Aggregate):
    class Registered(Aggregate.Created):
        customer_id: str

    class InteractionRecorded(Aggregate.Event):
        # v2 added `currency`. Stored events are never rewritten: a v1 one gains the field as
        # it is read, from the same properties the v2 code reads it from when recording.
        class_version = 2

        event_id: str
        type: str
        occurred_at: datetime
        session_id: str | None
        channel: str | None
        properties: dict[str, Any]
        currency: str | None  # ISO 4217 shape, upper case; None when properties name none

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # Frozen once shipped: old events must read the same on every replay. properties is
            # None when the customer was erased (forgotten), and the currency went with it.
            state["currency"] = currency_code(state.get("properties"))

        def apply(self, aggregate: Customer) -> None:
            aggregate.interaction_count += 1

    class TraitsUpdated(Aggregate.Event):
        # A None value removes that trait.
        traits: dict[str, Any]
        source: str | None

        def apply(self, aggregate: Customer) -> None:
            if self.traits is None or aggregate.traits is None:
                return  # forgotten: the customer was erased and this data went with the key
            for name, value in self.traits.items():
                if value is None:
                    aggregate.traits.pop(name, None)
                else:
                    aggregate.traits[name] = value

    class ConsentChanged(Aggregate.Event):
        purpose: str
        source: str
        policy_version: str | None
        occurred_at: datetime

        granted = True  # fixed by each concrete class below, not a field

        @property
        def state(self) -> ConsentState:
            """The purpose's state as this change set it (source None once erased)."""
            return ConsentState(
                purpose=ConsentPurpose(self.purpose),
                granted=self.granted,
                source=self.source,
                policy_version=self.policy_version,
                changed_at=self.occurred_at,
            )

        def apply(self, aggregate: Customer) -> None:
            state = self.state
            if state.supersedes(aggregate.consents.get(self.purpose)):
                aggregate.consents[self.purpose] = state

    class ConsentGranted(ConsentChanged):
        granted = True

    class ConsentWithdrawn(ConsentChanged):
        granted = False

    class ProfileErased(Aggregate.Event):
        """The fact of erasure stays on record; the personal data went with the customer's key.
        `reason` and `requested_by` describe the request, never the customer."""

        reason: str
        requested_by: str

        def apply(self, aggregate: Customer) -> None:
            # Emptied rather than kept: a snapshot taken from here on has nothing to encrypt.
            aggregate.customer_id = ""
            aggregate.traits = {}
            aggregate.consents = {}
            aggregate.erased = True

    # A class default, so snapshots taken before erasure existed still load.
    erased = False

    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.traits: dict[str, Any] = {}
        # Keyed by purpose name: snapshots come back from JSON with string keys.
        self.consents: dict[str, ConsentState] = {}
        self.interaction_count = 0

    @staticmethod
    def create_id(customer_id: str) -> UUID:
        return customer_uuid(customer_id)

    @classmethod
    def register(cls, customer_id: str, *, at: datetime) -> Customer:
        return cls._create(cls.Registered, customer_id=customer_id, timestamp=at)

    def tracking_allowed(self, model: ConsentModel) -> bool:
        return tracking_allowed(model, self.consents.get(_ANALYTICS))

    def erase(self, *, reason: str, requested_by: str, at: datetime) -> None:
        if not self.erased:
            self.trigger_event(
                self.ProfileErased, reason=reason, requested_by=requested_by, timestamp=at
            )

    def record_interaction(
        self,
        *,
        event_id: str,
        type: str,
        occurred_at: datetime,
        session_id: str | None,
        channel: str | None,
        properties: dict[str, Any],
        currency: str | None,
        at: datetime,
    ) -> None:
        self.trigger_event(
            self.InteractionRecorded,
            event_id=event_id,
            type=type,
            occurred_at=occurred_at,
            session_id=session_id,
            channel=channel,
            properties=properties,
            currency=currency,
            timestamp=at,
        )

    def update_traits(self, traits: dict[str, Any], *, source: str | None, at: datetime) -> None:
        # Recording a no-op would grow history without saying anything new.
        changes = {k: v for k, v in traits.items() if self.traits.get(k) != v}
        if changes:
            self.trigger_event(self.TraitsUpdated, traits=changes, source=source, timestamp=at)

    def change_consent(
        self,
        purpose: ConsentPurpose,
        *,
        granted: bool,
        source: str,
        policy_version: str | None,
        occurred_at: datetime,
        at: datetime,
    ) -> None:
        # Every change is recorded, even one that an earlier-recorded later change overrides:
        # the ledger must show what was said and when.
        self.trigger_event(
            self.ConsentGranted if granted else self.ConsentWithdrawn,
            purpose=purpose.value,
            source=source,
            policy_version=policy_version,
            occurred_at=occurred_at,
            timestamp=at,
        )
