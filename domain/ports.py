"""Interfaces the domain needs from the outside, implemented by adapters (and by test fakes)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable
from uuid import UUID

from eventsourcing.persistence import StoredEvent

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class RecordedInteraction:
    """Where an interaction's eventId was first stored."""

    originator_id: UUID
    version: int
    position: int


@dataclass(frozen=True)
class InteractionKey:
    """Passed to the recorder with the events, so the eventId is claimed in their transaction."""

    event_id: str
    originator_id: UUID
    version: int


@runtime_checkable
class EventIndex(Protocol):
    """Finds stored events: interactions by eventId (claimed forever), any event by stream version.

    A claim that collides with an earlier one fails the transaction that made it.
    """

    def find_interactions(self, event_ids: Collection[str]) -> dict[str, RecordedInteraction]: ...

    def find_positions(self, keys: Collection[tuple[UUID, int]]) -> dict[tuple[UUID, int], int]: ...

    def select_latest(self, originator_ids: Collection[UUID]) -> dict[UUID, list[StoredEvent]]:
        """Per stream, in one round trip: its latest snapshot (if any), then the later events."""
        ...
