"""Interfaces the domain needs from the outside, implemented by adapters (and by test fakes)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class ClaimedEvent:
    """Where a command's eventId was first stored: the event it claimed (for a command that
    changed nothing, the customer's latest event then)."""

    originator_id: UUID
    version: int
    position: int


@dataclass(frozen=True)
class EventIdClaim:
    """Passed to the recorder with the events, so the eventId is claimed in their transaction.
    Interactions, traits and consent changes share one namespace of eventIds."""

    event_id: str
    originator_id: UUID
    version: int


@dataclass(frozen=True)
class SourceOffsets:
    """How far a consumer of an outside log (a Kafka consumer group) got with one transaction.

    Passed to the recorder with the events, so the events and the consumer's position commit
    together. Each entry is (topic, partition, first offset in the batch, next offset to read);
    the recorder refuses the whole transaction (SourceMoved) when another consumer has already
    stored a position past the batch's first offset.
    """

    group: str
    entries: tuple[tuple[str, int, int, int], ...]


@dataclass(frozen=True)
class BatchRead:
    claimed: dict[str, ClaimedEvent]
    streams: dict[UUID, list[StoredEvent]]


@runtime_checkable
class EventIndex(Protocol):
    """Finds stored events: commands' events by eventId (claimed forever), any event by stream
    version.

    A claim that collides with an earlier one fails the transaction that made it.
    """

    def find_positions(self, keys: Collection[tuple[UUID, int]]) -> dict[tuple[UUID, int], int]: ...

    def select_stream(
        self, originator_id: UUID, *, after: int = 0, limit: int = 100
    ) -> list[tuple[int, StoredEvent]]:
        """One stream's events above version `after`, oldest first, with global positions."""
        ...

    def read_for_batch(
        self, event_ids: Collection[str], originator_ids: Collection[UUID]
    ) -> BatchRead:
        """In one round trip: which eventIds are claimed, and each stream's latest snapshot
        (if any) followed by its later events."""
        ...


@runtime_checkable
class BatchMapper(Protocol):
    """A mapper that maps a transaction's events in one call (keys looked up once each)."""

    def to_stored_events(
        self, domain_events: Sequence[DomainEventProtocol[UUID]]
    ) -> list[StoredEvent]: ...


@runtime_checkable
class PersonalDataVault(Protocol):
    """Holds each customer's data keys: the mapper it makes stores personal fields encrypted
    with them; erasure deletes them (crypto-shredding)."""

    def mapper(self, transcoder: Transcoder) -> Mapper[UUID]: ...

    def prepare(self, ids: Collection[UUID]) -> None:
        """Makes sure each customer has a key (creating it) before their events are written."""
        ...

    def close(self) -> None:
        """Releases its connection (the application's close calls it)."""
        ...

    def forget(self, ids: Collection[UUID]) -> None:
        """Drops cached keys of customers whose keys the event store just shredded (the
        erasure's commit deletes them, so that the event and the shredding go together)."""
        ...
