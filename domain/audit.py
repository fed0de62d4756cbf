"""What auditors ask of one customer's history, answered from the events alone (pure).

The events come from the store in version order with their global positions; nothing here
reads a read model, so an answer holds even if every read model were lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from eventsourcing.application import project_aggregate

from domain.consent import ConsentPurpose, ConsentState
from domain.customer import Customer

Positioned = tuple[int, Any]  # (global position, domain event)


@dataclass(frozen=True)
class ConsentRecord:
    """A purpose's state at an instant, and the event that set it (None: never stated)."""

    state: ConsentState | None
    position: int | None = None
    version: int | None = None
    recorded_at: datetime | None = None


def profile_as_of(
    events: Sequence[Positioned], *, at: datetime | None = None, version: int | None = None
) -> Customer | None:
    """The aggregate as the service knew it: events recorded at or before `at`, and up to
    `version`. None when the customer did not exist yet."""
    chosen = (
        e
        for _, e in events
        if (at is None or e.timestamp <= at)
        and (version is None or e.originator_version <= version)
    )
    return cast(Customer | None, project_aggregate(None, chosen))


def consent_at(
    events: Iterable[Positioned], purpose: ConsentPurpose, at: datetime
) -> ConsentRecord:
    """Judged by occurredAt, as the live profile is: of the changes that had happened by `at`,
    the latest wins (on a tie, the one recorded later), however late it was recorded."""
    best: ConsentRecord = ConsentRecord(None)
    for position, event in events:
        if not isinstance(event, Customer.ConsentChanged) or event.purpose != purpose.value:
            continue
        if event.occurred_at > at:
            continue
        state = event.state
        if state.supersedes(best.state):
            best = ConsentRecord(state, position, event.originator_version, event.timestamp)
    return best


def consent_history(events: Iterable[Positioned]) -> list[ConsentRecord]:
    """Every grant and withdrawal, in the order recorded."""
    return [
        ConsentRecord(
            e.state,
            position,
            e.originator_version,
            e.timestamp,
        )
        for position, e in events
        if isinstance(e, Customer.ConsentChanged)
    ]
