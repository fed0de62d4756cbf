"""Hand-written fakes of our own interfaces, for tests that need no I/O."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, EventStore, IntegrityError, StoredEvent
from eventsourcing.popo import POPOAggregateRecorder, POPOApplicationRecorder

from domain.application import ProfileApplication
from domain.ports import BatchRead, ClaimedEvent, EventIdClaim


class InMemoryRecorder(POPOApplicationRecorder):
    """Events in memory, with eventId claims that fail the insert as Postgres's key would."""

    def __init__(self) -> None:
        super().__init__()
        self.claims: dict[str, ClaimedEvent] = {}

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        claims: Sequence[EventIdClaim] = kwargs.get("claims") or ()
        with self._database_lock:
            taken = [c.event_id for c in claims if c.event_id in self.claims]
            if taken:
                raise IntegrityError(f"eventIds already claimed: {taken}")
            ids = self._insert_events(stored_events, **kwargs)
            assert ids is not None
            where = {
                (e.originator_id, e.originator_version): n
                for e, n in zip(stored_events, ids, strict=True)
            }
            missing = [k for c in claims if (k := (c.originator_id, c.version)) not in where]
            # A claim of a command that changed nothing names an event stored before.
            where.update(self._positions_unlocked(missing))
            for c in claims:
                position = where[(c.originator_id, c.version)]
                self.claims[c.event_id] = ClaimedEvent(c.originator_id, c.version, position)
        return ids

    def _positions_unlocked(
        self, keys: Collection[tuple[UUID, int]]
    ) -> dict[tuple[UUID, int], int]:
        wanted = set(keys)
        return {
            (e.originator_id, e.originator_version): n
            for n, e in enumerate(self._stored_events, start=1)
            if (e.originator_id, e.originator_version) in wanted
        }

    def find_positions(self, keys: Collection[tuple[UUID, int]]) -> dict[tuple[UUID, int], int]:
        found: dict[tuple[UUID, int], int] = {}
        for notification in self.select_notifications(start=1, limit=1_000_000):
            key = (UUID(str(notification.originator_id)), notification.originator_version)
            if key in keys:
                found[key] = notification.id
        return found

    def select_stream(
        self, originator_id: UUID, *, after: int = 0, limit: int = 100
    ) -> list[tuple[int, StoredEvent]]:
        found: list[tuple[int, StoredEvent]] = [
            (n.id, n)
            for n in self.select_notifications(start=1, limit=1_000_000)
            if n.originator_id == originator_id and n.originator_version > after
        ]
        return found[:limit]

    snapshots: POPOAggregateRecorder | None = None  # set by the application that owns both

    def read_for_batch(
        self, event_ids: Collection[str], originator_ids: Collection[UUID]
    ) -> BatchRead:
        streams: dict[UUID, list[StoredEvent]] = {}
        for uid in originator_ids:
            latest = self.snapshots.select_events(uid, desc=True, limit=1) if self.snapshots else []
            after = latest[0].originator_version if latest else None
            events = list(latest) + list(self.select_events(uid, gt=after))
            if events:
                streams[uid] = events
        claimed = {e: self.claims[e] for e in event_ids if e in self.claims}
        return BatchRead(claimed, streams)


class InMemoryProfileApplication(ProfileApplication):
    def construct_recorder(self) -> ApplicationRecorder:
        return InMemoryRecorder()

    def construct_snapshot_store(self) -> EventStore[UUID]:
        store = super().construct_snapshot_store()
        assert isinstance(self.recorder, InMemoryRecorder)
        assert isinstance(store.recorder, POPOAggregateRecorder)
        self.recorder.snapshots = store.recorder
        return store


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def memory_app(clock: FakeClock | None = None, **kwargs: Any) -> InMemoryProfileApplication:
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.popo",
        "IS_SNAPSHOTTING_ENABLED": "y",
        "AGGREGATE_CACHE_MAXSIZE": "1000",
        "AGGREGATE_CACHE_FASTFORWARD": "n",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
    }
    return InMemoryProfileApplication(env, clock=clock or FakeClock(), **kwargs)
