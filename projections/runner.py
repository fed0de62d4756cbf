"""Keeps read models live: pages through the event store in order and applies each page to Redis
in one atomic script call per read model, together with the position it reached.

A projector killed at any instant resumes from the stored position; a replayed page is refused
by the script, so nothing is lost or applied twice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from eventsourcing.persistence import ApplicationRecorder, Mapper
from redis.exceptions import ResponseError

from adapters.collector import few_collections
from adapters.store_wait import Outage
from projections.ops import Op, encode
from projections.scripts import APPLY_BATCH

logger = logging.getLogger(__name__)

# The longest a working projector goes without reporting to the query side, when idle (it
# reports every pass) or in a long catch-up or back-fill (it reports between steps).
HEARTBEAT_SECONDS = 1.0


class ReadModel(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def version(self) -> int:
        """The version of its keys (a rebuild writes the next one beside the serving one)."""
        ...

    @property
    def schema(self) -> int:
        """The stored shape its code writes; a version built with another is not written."""
        ...

    @property
    def tracking_key(self) -> str: ...

    @property
    def key_patterns(self) -> list[str]:
        """Globs matching every key of this version (to delete it once it is replaced)."""
        ...

    def page_changes(self, events: Sequence[tuple[int, object]]) -> list[Op]:
        """The view changes for a page of (position, event), in store order."""
        ...


@runtime_checkable
class Maintained(Protocol):
    """A read model with work beyond events: time-driven changes, back-fills."""

    def maintain(self, apply: ApplyOps, pages: PageReader) -> bool:
        """Does one bounded step; True when it did something (so the loop does not sleep)."""
        ...


ApplyOps = Callable[[str, int, int, list[Op]], bool]  # tracking key, after, last, ops
PageReader = Callable[[int, int], list[tuple[int, Any]]]  # after, stop -> decoded page


@runtime_checkable
class Prefetching(Protocol):
    """A mapper that reads what a page needs (such as data keys) in one go, before decoding."""

    def prefetch(self, originator_ids: Collection[Any]) -> None: ...


class Wakeup(Protocol):
    """Blocks until the store may have new events, or the timeout passes."""

    def wait(self, timeout: float) -> None: ...


@dataclass
class Status:
    position: int = 0
    head: int = 0
    lag_seconds: float = 0.0
    batches: int = 0
    events: int = 0

    @property
    def lag(self) -> int:
        return max(self.head - self.position, 0)


class Health:
    """What the projector's loop last said of itself, for a readiness check in another thread:
    the trouble it is in (waiting for a store, a failing pass), or when it last got on."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._trouble: str | None = "starting"
        self._progressed = clock()

    def trouble(self, line: str) -> None:
        with self._lock:
            self._trouble = line

    def progressed(self) -> None:
        with self._lock:
            self._trouble, self._progressed = None, self._clock()

    def problem(self, bound: float) -> str | None:
        """None while following; otherwise what is wrong. A loop that has not got on for
        `bound` seconds is stuck (a store that hangs instead of failing)."""
        with self._lock:
            if self._trouble is not None:
                return self._trouble
            quiet = self._clock() - self._progressed
        return f"no progress for {quiet:.1f} s" if quiet > bound else None


BatchObserver = Callable[[str, int, float], None]  # (read model, events, seconds)
PageObserver = Callable[[int, int], None]  # (lowest position reached, target)
# The models to keep live, asked again on every pass: a rebuild may switch their versions.
ModelSource = Callable[[], Sequence[ReadModel]]
SpanFactory = Callable[..., AbstractContextManager[object]]


class Projector:
    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: Mapper[Any],
        redis: Any,
        models: Sequence[ReadModel] | ModelSource,
        *,
        batch_size: int = 1_000,
        on_batch: BatchObserver | None = None,
        on_page: PageObserver | None = None,
        span: SpanFactory | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        health: Health | None = None,
    ) -> None:
        self._recorder = recorder
        self._mapper = mapper
        self._redis = redis
        if callable(models):
            self._source: ModelSource = models
        else:
            fixed = list(models)
            self._source = lambda: fixed
        self._models = list(self._source())
        self._batch_size = batch_size
        self._on_batch = on_batch
        self._on_page = on_page
        self._span = span or (lambda name, **attrs: nullcontext())
        self._apply = redis.register_script(APPLY_BATCH)
        self.status = {m.name: Status() for m in self._models}
        self._clock = clock  # stamps the heartbeat: the query side judges its age
        self.health = health or Health()
        self._beaten = time.monotonic()

    def position(self, model: ReadModel) -> int:
        raw = self._redis.hget(model.tracking_key, "position")
        return int(raw) if raw else 0

    def catch_up(self, until: int | None = None) -> int:
        """Applies every stored event (up to `until`); returns how many events were applied.

        Each page is read and decoded once, then offered to every read model still behind it.
        A model's changes are applied by a writer thread while the next model works out its
        own, so Redis running one script overlaps with Python computing the next. Applies
        keep their order, and a model computes its next page only after its previous one is
        applied (the segment model reads what it wrote; every model needs its true position).
        """
        with few_collections():
            return self._catch_up(until)

    def _catch_up(self, until: int | None) -> int:
        self._models = list(self._source())
        for model in self._models:
            self.status.setdefault(model.name, Status())
        head = self._recorder.max_notification_id() or 0
        target = until or head
        positions = {m.name: self.position(m) for m in self._models}
        applied = dict.fromkeys(positions, 0)

        def settled(name: str, pending: Future[tuple[int, int]]) -> None:
            count, positions[name] = pending.result()
            applied[name] += count

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="page-writer") as writer:
            applying: dict[str, Future[tuple[int, int]]] = {}
            for events in self._pages(min(positions.values(), default=target), target):
                for model in self._models:
                    if model.name in applying:
                        settled(model.name, applying.pop(model.name))
                    after = positions[model.name]
                    # Usually every model is at the page's start: no copy of the page then.
                    mine = events if events[0][0] > after else [x for x in events if x[0] > after]
                    if mine:
                        started = time.perf_counter()
                        ops = encode(model.page_changes(mine))
                        applying[model.name] = writer.submit(
                            self._apply_page, model, positions[model.name], mine, ops, started
                        )
                if self._on_page is not None:
                    self._on_page(min(positions.values()), target)
                if time.monotonic() - self._beaten >= HEARTBEAT_SECONDS:
                    self._report(positions, head)  # a long catch-up is not a stalled one
            for name, pending in applying.items():
                settled(name, pending)
        self._report(positions, head)
        # Events, not events times read models: the model furthest behind saw every one.
        return max(applied.values(), default=0)

    def _pages(self, start: int, target: int) -> Iterator[list[tuple[int, Any]]]:
        """Decoded pages in order; the next one is read and decoded while this one is applied,
        so waiting on Redis overlaps with work on Postgres's answer instead of following it."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="page-reader") as reader:
            upcoming: Future[list[tuple[int, Any]]] | None = None
            if start < target:
                upcoming = reader.submit(self._read_page, start, target)
            while upcoming is not None:
                page = upcoming.result()
                if not page:
                    return
                last = page[-1][0]
                upcoming = reader.submit(self._read_page, last, target) if last < target else None
                yield page

    def _read_page(self, after: int, target: int) -> list[tuple[int, Any]]:
        notifications = self._recorder.select_notifications(
            start=after, limit=self._batch_size, stop=target, inclusive_of_start=False
        )
        if isinstance(self._mapper, Prefetching):
            self._mapper.prefetch({n.originator_id for n in notifications})
        return [(n.id, self._mapper.to_domain_event(n)) for n in notifications]

    def _apply_page(
        self,
        model: ReadModel,
        position: int,
        mine: Sequence[tuple[int, Any]],
        ops: bytes,
        started: float,
    ) -> tuple[int, int]:
        """Applies one page's ops with its position; returns (events applied, position)."""
        last = mine[-1][0]
        with self._span("projection.batch", read_model=model.name, events=len(mine)):
            try:
                fresh = self._apply(args=[model.tracking_key, position, last, ops])
            except ResponseError as error:
                if "POSITION" not in str(error):
                    raise
                fresh = 0
        if not fresh:
            # Another projector moved this read model (it should have only one): follow it.
            logger.warning("%s: position moved under this projector; resyncing", model.name)
            return 0, self.position(model)
        status = self.status[model.name]
        status.batches += 1
        status.events += len(mine)
        # How far behind real time the view is: the age of the newest event it now holds.
        newest = mine[-1][1].timestamp
        status.lag_seconds = max((datetime.now(UTC) - newest).total_seconds(), 0.0)
        if self._on_batch is not None:
            self._on_batch(model.name, len(mine), time.perf_counter() - started)
        return len(mine), last

    def _report(self, positions: dict[str, int], head: int) -> None:
        """The heartbeat: each model's head and lag as this projector sees them, stamped
        `updatedAt`. The query side reads no Postgres: it learns the head from here, and
        calls a model stalled when its stamp grows old."""
        stamp = self._clock().isoformat()
        with self._redis.pipeline(transaction=False) as pipe:
            for model in self._models:
                status = self.status[model.name]
                position = positions.get(model.name, status.position)
                status.position, status.head = position, max(head, position)
                if status.lag == 0:
                    status.lag_seconds = 0.0
                mapping = {
                    "head": status.head,
                    "lagSeconds": f"{status.lag_seconds:.3f}",
                    "version": model.version,
                    "schema": model.schema,
                    "updatedAt": stamp,
                }
                pipe.hset(model.tracking_key, mapping=mapping)
            pipe.execute()
        self._beaten = time.monotonic()
        self.health.progressed()

    def _report_head(self) -> None:
        """After a failed pass: the head only, and no stamp. The lag the query side shows then
        grows with the store while the model is stalled, instead of keeping the last one."""
        # Best effort: the store that failed the pass may fail this too, and is logged already.
        with contextlib.suppress(Exception):
            head = self._recorder.max_notification_id() or 0
            with self._redis.pipeline(transaction=False) as pipe:
                for model in self._models:
                    status = self.status[model.name]
                    status.head = max(head, status.position)
                    pipe.hset(model.tracking_key, "head", status.head)
                pipe.execute()

    def maintain(self) -> bool:
        """One step of each read model's time-driven or back-fill work."""
        busy = False
        for model in self._models:
            if isinstance(model, Maintained):
                busy = model.maintain(self.apply_ops, self._read_page) or busy
        return busy

    def apply_ops(self, tracking_key: str, after: int, last: int, ops: list[Op]) -> bool:
        """Applies ops atomically with a tracking position; after == last: no position move."""
        applied = bool(self._apply(args=[tracking_key, after, last, encode(ops)]))
        if time.monotonic() - self._beaten >= HEARTBEAT_SECONDS:
            # A back-fill evaluates every profile in one step: it reports as it goes.
            self._report({}, max((s.head for s in self.status.values()), default=0))
        return applied

    def run(self, stop: threading.Event, wakeup: Wakeup, poll_seconds: float = 1.0) -> None:
        """Follows the store until `stop` is set; a NOTIFY wakes it, a poll covers a lost one.
        With time-driven read models the wait is short, so a window sliding past shows within
        a second."""
        timed = any(isinstance(m, Maintained) for m in self._models)
        wait = min(poll_seconds, 0.2 if timed else HEARTBEAT_SECONDS)
        failing = Outage("projecting", "projecting again", logger, trace=True)
        while not stop.is_set():
            try:
                applied = self.catch_up()
                busy = self.maintain()
            except Exception as error:
                self.health.trouble(failing.failed(error))
                self._report_head()
                stop.wait(poll_seconds)
                continue
            failing.ended()
            if applied == 0 and not busy:
                wakeup.wait(wait)
