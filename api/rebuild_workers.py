"""A rebuild's catch-up split over processes: the segment model in one, the others in another.

Each process is an ordinary projector over its own read models: it reads and decodes the pages
itself and applies each page with that model's position, so exactness and resume after a crash
are the projector's own (a model's position never runs ahead of its data, whatever process
wrote it). Read models share nothing in Redis, so their order relative to each other does not
matter; within one model the pages stay in store order. On two cores one Python process is held
to one core by its GIL while Postgres and Redis leave the other half idle; two use both.

A worker dies with the process that started it (Linux: PR_SET_PDEATHSIG), so a rebuild killed
at any instant leaves no writer behind, only positions to resume from.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis

from adapters.settings import Settings
from adapters.store_config import build_application
from domain.application import utc_now
from domain.ports import Clock
from projections import segments
from projections.catalog import Catalog
from projections.runner import Projector
from projections.versions import VersionPointer

STEP = 100_000  # events per catch_up() call in a worker: how often it looks for a stop
POLL_SECONDS = 0.5


def groups(names: Sequence[str]) -> list[list[str]]:
    """The segment model (about half the work) apart from the others, when both are asked."""
    alone = [n for n in names if n == segments.NAME]
    rest = [n for n in names if n != segments.NAME]
    return [g for g in (alone, rest) if g]


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent check between steps remains
        pass


def _catch_up(
    settings: Settings,
    versions: Mapping[str, int],
    until: int,
    stop: Any,  # multiprocessing.Event
    reached: Any,  # multiprocessing.Value('q')
    parent: int,
    clock: Clock,
) -> None:
    _die_with_parent()
    from api.bootstrap import read_model_factories  # bootstrap imports this module

    reader = build_application(settings, utc_now, cache=False)
    client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        factories = read_model_factories(settings, clock, client)
        catalog = Catalog(factories, VersionPointer(client, settings.redis_namespace))
        models = [catalog.at(name, version, live=False) for name, version in versions.items()]

        def on_page(position: int, head: int) -> None:
            reached.value = position

        projector = Projector(
            reader.recorder,
            reader.mapper,
            client,
            models,
            batch_size=settings.rebuild_batch,
            on_page=on_page,
        )
        position = min(projector.position(m) for m in models)
        while position < until and not stop.is_set() and os.getppid() == parent:
            projector.catch_up(until=min(position + STEP, until))
            position = min(projector.position(m) for m in models)
            reached.value = position
    finally:
        reader.close()
        client.close()


def parallel_catch_up(
    settings: Settings, clock: Clock
) -> Callable[[Mapping[str, int], int, threading.Event, Callable[[int], None]], None]:
    """What `Rebuild` calls to bring the versions it builds up to a position, in processes."""

    def run(
        versions: Mapping[str, int],
        until: int,
        stop: threading.Event,
        on_position: Callable[[int], None],
    ) -> None:
        split = groups(list(versions))
        if len(split) < 2:
            return  # one group: the rebuild's own projector does it, in this process
        # spawn, not fork: this process holds pools, sockets and threads a fork would copy.
        context = multiprocessing.get_context("spawn")
        halt = context.Event()
        positions = [context.Value("q", 0) for _ in split]
        workers = [
            context.Process(
                target=_catch_up,
                args=(settings, {n: versions[n] for n in group}, until, halt, at, os.getpid()),
                kwargs={"clock": clock},
                name=f"rebuild-{'+'.join(group)}",
                daemon=True,
            )
            for group, at in zip(split, positions, strict=True)
        ]
        for worker in workers:
            worker.start()
        try:
            while any(w.is_alive() for w in workers):
                if stop.wait(POLL_SECONDS):
                    halt.set()
                on_position(min(p.value for p in positions))
        finally:
            halt.set()
            for worker in workers:
                worker.join()
        failed = [w.name for w in workers if w.exitcode != 0]
        if failed:
            raise RuntimeError(f"rebuild worker {', '.join(failed)} failed; run again to resume")

    return run
