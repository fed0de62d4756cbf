"""Bookkeeping for one shared transaction: aggregates touched and where each result will point."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from uuid import UUID

from domain.commands import CommandResult
from domain.customer import Customer
from domain.errors import DomainError
from domain.ports import EventIdClaim

Outcome = list[CommandResult] | DomainError
Slot = tuple[int, int]  # (unit index, command index)


@dataclass
class Batch:
    customers: dict[UUID, Customer | None] = field(default_factory=dict)
    versions_before: dict[UUID, int] = field(default_factory=dict)
    claims: dict[str, EventIdClaim] = field(default_factory=dict)
    # Results whose position is known only once the events are stored.
    pending: dict[Slot, tuple[UUID, int]] = field(default_factory=dict)
    duplicates_in_batch: dict[Slot, str] = field(default_factory=dict)
    # Customers erased in this transaction: their keys are shredded in its commit.
    erased: set[UUID] = field(default_factory=set)
    # Customers created in this transaction; a refused unit that created one must be undone.
    registered: int = 0

    def fill_positions(
        self, outcomes: list[Outcome], positions: Mapping[tuple[UUID | str, int], int]
    ) -> None:
        latest: dict[UUID | str, int] = {}
        for (originator, _version), position in positions.items():
            latest[originator] = max(latest.get(originator, 0), position)
        for (u, i), (uid, version) in self.pending.items():
            outcome = outcomes[u]
            if isinstance(outcome, list):
                # A command that changed nothing (same traits again) points at the
                # customer's latest event in this transaction, or 0 when there is none.
                position = positions.get((uid, version)) or latest.get(uid, 0)
                outcome[i] = CommandResult(outcome[i].id, version, position)
        for (u, i), event_id in self.duplicates_in_batch.items():
            outcome = outcomes[u]
            claim = self.claims[event_id]
            if isinstance(outcome, list):
                # 0 for a claim of an event stored before (a command that changed nothing):
                # found with the other unwritten ones afterwards.
                position = positions.get((claim.originator_id, claim.version), 0)
                outcome[i] = CommandResult(outcome[i].id, claim.version, position, duplicate=True)
