"""Rebuilds read models from position 0 as a new version beside the serving one, then switches.

The serving version stays live (its projector carries on) while the new one is built from
the event store in large pages: first stream by stream up to the head at the start, in shares
that worker processes build side by side (`stream_build`), then in store order from there.
Once the new version has reached the serving one's position, one script call makes it serve
(`VersionPointer.switch`); after a grace period the old version's keys are deleted. A rebuild
that stops (crash, Ctrl-C) resumes from the new version's cursors or position when started
again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, Mapper

from adapters.collector import few_collections
from projections import stream_build
from projections.catalog import Catalog
from projections.runner import Projector, ReadModel
from projections.stream_build import Plan, StreamBuilder, StreamRecorder
from projections.versions import drop_version

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    names: tuple[str, ...]
    versions: tuple[int, ...]
    phase: str  # building, switching, dropping, done
    start: int  # the position this run started from (above 0 when resuming)
    position: int
    head: int
    seconds: float

    @property
    def done(self) -> int:
        return self.position - self.start

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        left = max(self.head - self.position, 0)
        return left / self.rate if self.rate > 0 else None

    @property
    def fraction(self) -> float:
        return self.position / self.head if self.head else 1.0


ProgressObserver = Callable[[Progress], None]
# Builds the given shares of a stream pass (`stream_build`) for the given versions in other
# processes; returns early when the event is set. Whatever it left
# undone is done in this process after it, from each share's own cursor.
BuildShares = Callable[[Plan, Mapping[str, int], Iterable[int], threading.Event], None]


@dataclass(frozen=True)
class RebuildResult:
    versions: dict[str, int]  # the versions that now serve
    replaced: dict[str, int]  # the versions they replaced (deleted)
    events: int
    seconds: float


class Rebuild:
    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: Mapper[Any],
        redis: Any,
        catalog: Catalog,
        names: Sequence[str],
        *,
        batch_size: int = 5_000,
        grace_seconds: float = 2.0,
        on_progress: ProgressObserver | None = None,
        processes: int = 1,
        shares: BuildShares | None = None,
    ) -> None:
        known = ", ".join(catalog.names)
        if not names:
            raise LookupError(f"name the read models to rebuild, of {known}")
        unknown = [n for n in names if n not in catalog.names]
        if unknown:
            raise LookupError(
                f"no read model named {', '.join(unknown)}; the read models are {known}"
            )
        self._recorder = recorder
        self._mapper = mapper
        self._redis = redis
        self._catalog = catalog
        self._names = list(dict.fromkeys(names))
        self._batch_size = batch_size
        self._grace = grace_seconds
        self._on_progress = on_progress or (lambda progress: None)
        self._processes = processes
        self._shares = shares

    def run(self, stop: threading.Event | None = None) -> RebuildResult | None:
        """Builds, switches and drops; None when `stop` was set first (resume by running again)."""
        with few_collections():
            return self._run(stop)

    def _run(self, stop: threading.Event | None) -> RebuildResult | None:
        stop = stop or threading.Event()
        started = time.monotonic()
        pointer = self._catalog.pointer
        self._drop_retired()  # an earlier run may have stopped between switch and drop
        versions = pointer.begin(self._names)
        models = [self._catalog.at(name, v, live=False) for name, v in versions.items()]
        self._claim(models)
        start = min(int(self._redis.hget(m.tracking_key, "position") or 0) for m in models)

        def report(phase: str, position: int, head: int, since: int = start) -> None:
            self._on_progress(
                Progress(
                    names=tuple(versions),
                    versions=tuple(versions.values()),
                    phase=phase,
                    start=since,
                    position=position,
                    head=head,
                    seconds=time.monotonic() - started,
                )
            )

        earlier = self._stream_pass(models, stop, report)
        if earlier is None:
            return None
        projector = Projector(
            self._recorder,
            self._mapper,
            self._redis,
            models,
            batch_size=self._batch_size,
            on_page=lambda position, head: report("building", position, head),
        )
        while True:
            if stop.is_set():
                return None
            projector.catch_up()
            # Time-driven changes and segment back-fills, until there are none left to do.
            while projector.maintain() and not stop.is_set():
                pass
            position = min(projector.position(m) for m in models)
            head = max(self._recorder.max_notification_id() or 0, position)
            report("switching", position, head)
            if pointer.switch(versions, self._catalog.tracking):
                break
            # The serving version moved on while this one caught up: follow it once more.
        replaced = {name: v.retired for name, v in pointer.read(self._names).items() if v.retired}
        report("dropping", position, head)
        # Readers confirm the pointer in each read, so none reads the old version after the
        # switch; the pause lets a projector's page in flight against it fail and resync first.
        stop.wait(self._grace)
        self._drop_retired()
        report("done", position, head)
        events = position - start - earlier
        return RebuildResult(versions, replaced, events, time.monotonic() - started)

    def _stream_pass(
        self,
        models: Sequence[ReadModel],
        stop: threading.Event,
        report: Callable[..., None],
    ) -> int | None:
        """The history up to now, stream by stream, for models built from 0. Returns how many
        of its events an earlier run applied (0 when there was no pass to make); None if
        stopped before it was done."""
        if not isinstance(self._recorder, StreamRecorder):
            return 0
        head = self._recorder.max_notification_id() or 0
        chosen = stream_build.plan(self._redis, models, head, self._processes)
        if chosen is None:
            return 0
        building = stream_build.in_pass(self._redis, models)
        stream_build.define_all(self._recorder, self._mapper, self._redis, building, chosen.until)
        before = stream_build.events_done(self._redis, building)

        def progress() -> None:
            done = stream_build.events_done(self._redis, building)
            report("building", done, chosen.until, before)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="share-workers") as others:
            # Share 0 here, the others in worker processes meanwhile; all here when the
            # clock cannot go to workers (a test's closure) or one process is asked for.
            here = range(chosen.shares)
            elsewhere = None
            if self._shares is not None and chosen.shares > 1:
                versions = {m.name: m.version for m in building}
                here = range(1)
                elsewhere = others.submit(
                    self._shares, chosen, versions, range(1, chosen.shares), stop
                )
            self._build_shares(building, chosen, here, stop, progress)
            while elsewhere is not None and not wait([elsewhere], timeout=1.0).done:
                progress()
            if elsewhere is not None:
                elsewhere.result()  # a worker's failure
        if stop.is_set() or not stream_build.finish(self._redis, building):
            return None
        return before

    def _build_shares(
        self,
        building: Sequence[ReadModel],
        chosen: Plan,
        indexes: Iterable[int],
        stop: threading.Event,
        progress: Callable[[], None],
    ) -> None:
        assert isinstance(self._recorder, StreamRecorder)
        for index in indexes:
            if stop.is_set():
                return
            share = chosen.share(index)
            builder = StreamBuilder(
                self._recorder,
                self._mapper,
                self._redis,
                building,
                chosen,
                share,
                batch_size=self._batch_size,
                on_page=lambda events: progress(),
            )
            builder.run(stop)

    def _claim(self, models: Sequence[ReadModel]) -> None:
        """Stamps each new version with this code's schema. A version half built by code with
        another schema is started again from position 0 rather than finished in a second shape."""
        stamps = self._catalog.pointer.schemas([m.tracking_key for m in models])
        for model, stamp in zip(models, stamps, strict=True):
            if stamp is not None and stamp != model.schema:
                logger.warning(
                    "%s v%d was started with schema %d; this code writes %d: starting it again",
                    model.name,
                    model.version,
                    stamp,
                    model.schema,
                )
                drop_version(self._redis, model.tracking_key, model.key_patterns)
            self._redis.hset(model.tracking_key, "schema", model.schema)

    def _drop_retired(self) -> None:
        for name, versions in self._catalog.pointer.read(self._names).items():
            if versions.retired is None:
                continue
            old = self._catalog.at(name, versions.retired)
            deleted = drop_version(self._redis, old.tracking_key, old.key_patterns)
            self._catalog.pointer.forget_retired(name, versions.retired)
            logger.info("%s: version %d deleted (%d keys)", name, versions.retired, deleted)
