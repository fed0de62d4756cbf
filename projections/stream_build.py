"""A rebuild's first pass: the history up to where the rebuild started, read stream by stream.

Read models are per customer (profile, score, segment facts); only segment definitions are
shared, and they are applied first, as they stand at the end of the pass. In store order a
page of 5,000 events touches thousands of profiles, each loaded, changed and written back for
one event; in stream order it touches a few hundred, each once with all of its events. Within
a stream the order is the store's (versions), so every view ends as a build in store order
leaves it.

The stream id space is split into shares, so that several processes can build at once. Each
model keeps a cursor per share (the last stream id and version applied) in its tracking hash,
moved by the script call that applies the page: a build killed at any instant resumes exactly.
When every share of a model is done, its position is set to where the pass stopped and the
rebuild carries on in store order from there (`Projector`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, cast, runtime_checkable
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Mapper, StoredEvent
from eventsourcing.utils import get_topic
from redis.exceptions import ResponseError

from domain.segment import Segment
from projections.ops import Op, encode
from projections.runner import Prefetching, ReadModel
from projections.scripts import APPLY_BATCH, APPLY_STREAMS, FINISH_STREAMS

logger = logging.getLogger(__name__)

PLAN = "streams"  # tracking-hash field: "<last position>/<shares>" while the pass goes on
DONE = "done"
SEGMENT_TOPICS = [get_topic(c) for c in (Segment.Defined, Segment.Redefined, Segment.Retired)]
_SPACE = 1 << 128


@dataclass(frozen=True)
class Plan:
    until: int  # the last store position the pass covers
    shares: int

    def text(self) -> str:
        return f"{self.until}/{self.shares}"

    @classmethod
    def parse(cls, text: str) -> Plan:
        until, shares = text.split("/")
        return cls(int(until), int(shares))

    def share(self, index: int) -> Share:
        return Share(index, self.shares)


@dataclass(frozen=True)
class Share:
    """One of `count` equal ranges of stream ids."""

    index: int
    count: int

    @property
    def first(self) -> UUID:
        return UUID(int=self.index * _SPACE // self.count)

    @property
    def last(self) -> UUID:
        return UUID(int=(self.index + 1) * _SPACE // self.count - 1)

    @property
    def field(self) -> str:
        return f"{PLAN}:{self.index}/{self.count}"


@runtime_checkable
class StreamRecorder(Protocol):
    def select_by_stream(
        self, after: tuple[UUID, int], last_id: UUID, until: int, limit: int
    ) -> list[tuple[int, StoredEvent]]: ...


@runtime_checkable
class DefinesAll(Protocol):
    """A read model with state shared by all streams (segment definitions), set up front."""

    def define_all(self, events: Sequence[tuple[int, object]]) -> list[Op]: ...


def plan(redis: Any, models: Sequence[ReadModel], head: int, shares: int) -> Plan | None:
    """The pass the models still need: the one begun earlier, or a new one up to `head` for
    models that have not begun (position 0). None when no model needs one."""
    stored = [redis.hget(m.tracking_key, PLAN) for m in models]
    positions = [int(redis.hget(m.tracking_key, "position") or 0) for m in models]
    begun = next((Plan.parse(s) for s in stored if s), None)
    wanting = [m for m, s, p in zip(models, stored, positions, strict=True) if not s and not p]
    if begun is None and (not wanting or head == 0):
        return None
    chosen = begun or Plan(head, shares)
    for model in wanting:
        redis.hset(model.tracking_key, PLAN, chosen.text())
    return chosen


def in_pass(redis: Any, models: Sequence[ReadModel]) -> list[ReadModel]:
    return [m for m in models if redis.hget(m.tracking_key, PLAN)]


def define_all(
    recorder: ApplicationRecorder,
    mapper: Mapper[Any],
    redis: Any,
    models: Sequence[ReadModel],
    until: int,
) -> None:
    """Applies every segment event up to `until` to the models that share definitions.
    Repeating it writes the same values, so a resumed pass simply does it again."""
    defining = [m for m in models if isinstance(m, DefinesAll)]
    if not defining:
        return
    events: list[tuple[int, object]] = []
    after = 0
    while True:
        page = recorder.select_notifications(after + 1, 1_000, until, topics=SEGMENT_TOPICS)
        if not page:
            break
        events += [(n.id, mapper.to_domain_event(n)) for n in page]
        after = page[-1].id
    apply = redis.register_script(APPLY_BATCH)
    for model in defining:
        ops = encode(model.define_all(events))
        apply(args=[model.tracking_key, 0, 0, ops])


def finish(redis: Any, models: Sequence[ReadModel]) -> bool:
    """Moves each model whose every share is done to the pass's last position."""
    done = redis.register_script(FINISH_STREAMS)
    return all(done(args=[m.tracking_key]) for m in models)


def applied(tracking: Mapping[str, str]) -> int:
    """Events a model's pass has applied, over all shares, from its tracking hash."""
    return sum(
        int(v) for k, v in tracking.items() if k.startswith(f"{PLAN}:") and k.endswith(":events")
    )


def events_done(redis: Any, models: Sequence[ReadModel]) -> int:
    """Events applied so far by the model furthest behind, over all shares."""
    return min((applied(redis.hgetall(m.tracking_key)) for m in models), default=0)


Cursor = tuple[UUID, int]
# A page's rows (for its end cursor) and its customer events with their cursors.
_Page = tuple[list[tuple[int, StoredEvent]], list[tuple[int, object, Cursor]]]


class StreamBuilder:
    """Builds one share of the pass for some models, page by page."""

    def __init__(
        self,
        recorder: StreamRecorder,
        mapper: Mapper[Any],
        redis: Any,
        models: Sequence[ReadModel],
        chosen: Plan,
        share: Share,
        *,
        batch_size: int = 5_000,
        on_page: Callable[[int], None] | None = None,
    ) -> None:
        self._recorder = recorder
        self._mapper = mapper
        self._redis = redis
        self._models = list(models)
        self._plan = chosen
        self._share = share
        self._batch_size = batch_size
        self._on_page = on_page or (lambda events: None)
        self._apply = redis.register_script(APPLY_STREAMS)

    def cursors(self) -> dict[str, str]:
        field = self._share.field
        return {m.name: self._redis.hget(m.tracking_key, field) or "" for m in self._models}

    def run(self, stop: threading.Event | None = None) -> int:
        """Builds until the share is done or `stop` is set; returns the events applied."""
        cursors = self.cursors()
        models = [m for m in self._models if cursors[m.name] != DONE]
        applied = 0

        def settled(name: str, pending: Future[int]) -> None:
            nonlocal applied
            applied += pending.result()

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-writer") as writer:
            applying: dict[str, Future[int]] = {}
            for rows, events in self._pages(
                min((self._after(cursors[m.name]) for m in models), default=None), stop
            ):
                end = _text(rows[-1][1]) if rows else DONE
                for model in models:
                    if model.name in applying:
                        settled(model.name, applying.pop(model.name))
                    if cursors[model.name] == DONE:
                        continue
                    after = self._after(cursors[model.name])
                    if rows and after >= _key(rows[-1][1]):
                        continue  # it got further before a restart
                    # Usually every model is at the page's start: no comparisons then.
                    mine = (
                        [(p, e) for p, e, _ in events]
                        if not events or events[0][2] > after
                        else [(p, e) for p, e, key in events if key > after]
                    )
                    ops = encode(model.page_changes(mine)) if mine else b"[]"
                    applying[model.name] = writer.submit(
                        self._apply_page, model, cursors[model.name], end, ops, len(mine)
                    )
                    cursors[model.name] = end
                self._on_page(len(events))
            for name, pending in applying.items():
                settled(name, pending)
        return applied

    def _after(self, cursor: str) -> Cursor:
        if not cursor:
            return (self._share.first, 0)
        stream, version = cursor.split("/")
        return (UUID(stream), int(version))

    def _pages(self, start: Cursor | None, stop: threading.Event | None) -> Iterator[_Page]:
        """(rows, decoded customer events with their keys) per page, the last page empty;
        the next page is read and decoded while this one is applied."""
        if start is None:
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-reader") as reader:
            upcoming = reader.submit(self._read, start)
            while True:
                rows, events = upcoming.result()
                if rows and not (stop and stop.is_set()):
                    upcoming = reader.submit(self._read, _key(rows[-1][1]))
                yield rows, events
                if not rows or (stop and stop.is_set()):
                    return

    def _read(self, after: Cursor) -> _Page:
        rows = self._recorder.select_by_stream(
            after, self._share.last, self._plan.until, self._batch_size
        )
        if isinstance(self._mapper, Prefetching):
            self._mapper.prefetch({stored.originator_id for _, stored in rows})
        events: list[tuple[int, object, Cursor]] = []
        for position, stored in rows:
            if stored.topic in SEGMENT_TOPICS:
                continue  # applied up front, by `define_all`
            events.append((position, self._mapper.to_domain_event(stored), _key(stored)))
        return rows, events

    def _apply_page(self, model: ReadModel, before: str, end: str, ops: bytes, count: int) -> int:
        try:
            track, field = model.tracking_key, self._share.field
            fresh = self._apply(args=[track, field, before, ops, end, count])
        except ResponseError as error:
            if "CURSOR" not in str(error):
                raise
            raise RuntimeError(
                f"{model.name}: another process builds share {self._share.field}; "
                "run one rebuild at a time"
            ) from None
        return count if fresh else 0


def _key(stored: StoredEvent) -> Cursor:
    return (cast(UUID, stored.originator_id), stored.originator_version)


def _text(stored: StoredEvent) -> str:
    return f"{stored.originator_id}/{stored.originator_version}"
