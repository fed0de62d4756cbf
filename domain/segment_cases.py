"""Segment use cases of the profiles application: define and retire audiences.

Segments are few and rarely change, so they are saved one at a time, outside group commit;
they share the event store (and so the projectors' single ordered log) with customers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, PersistenceError, ProgrammingError

from domain.commands import CommandResult
from domain.errors import Conflict, NotFound, StoreUnavailable
from domain.ports import Clock, EventIndex
from domain.segment import DefineSegment, Segment, segment_uuid

LATEST = 2**62  # a version bound past any real one


class SegmentCases(Application[UUID]):
    clock: Clock
    event_index: EventIndex
    _segment_lock = threading.Lock()  # one segment command at a time per process

    def define_segment(self, command: DefineSegment) -> CommandResult:
        with self._segment_lock, _store_errors():
            now = self.clock()
            segment = self._segment(command.segment_id)
            if segment is None:
                segment = Segment.define(command, at=now)
            else:
                segment.redefine(command, at=now)
            return self._save_segment(segment, command.segment_id)

    def retire_segment(self, segment_id: str) -> CommandResult:
        with self._segment_lock, _store_errors():
            segment = self._segment(segment_id)
            if segment is None:
                raise NotFound(f"segment {segment_id!r} does not exist; define it first")
            segment.retire(at=self.clock())
            return self._save_segment(segment, segment_id)

    def segment_at(self, segment_id: str, version: int | None = None) -> Segment | None:
        return self._segment(segment_id, version)

    def _segment(self, segment_id: str, version: int | None = None) -> Segment | None:
        try:
            # Always from the store, never the cache (any version bound bypasses it): another
            # process may have changed the segment, and segments are rare enough to afford it.
            latest = version if version is not None else LATEST
            return cast(Segment, self.repository.get(segment_uuid(segment_id), version=latest))
        except AggregateNotFoundError:
            return None

    def _save_segment(self, segment: Segment, segment_id: str) -> CommandResult:
        if not segment.pending_events:
            found = self.event_index.find_positions([(segment.id, segment.version)])
            return CommandResult(
                segment_id, segment.version, found.get((segment.id, segment.version), 0)
            )
        try:
            recordings = self.save(segment)
        except IntegrityError:
            raise Conflict(
                f"segment {segment_id!r} was changed at the same time elsewhere; send it again"
            ) from None
        return CommandResult(segment_id, segment.version, recordings[-1].notification.id)


@contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except (IntegrityError, ProgrammingError):
        raise
    except PersistenceError as error:
        raise StoreUnavailable(f"the event store did not answer: {error}") from None
