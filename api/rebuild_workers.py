"""A rebuild's stream pass split over processes: each builds one share of the stream ids.

Each process reads and decodes its own share's streams and applies each page with that
share's cursor, so exactness and resume after a crash are the stream builder's own
(`projections.stream_build`). Shares hold different customers, and what they write in common
(segment member sets, the due set) are set additions that commute. On two cores one Python
process is held to one core by its GIL while Postgres and Redis leave the other half idle;
two use both.

A worker dies with the process that started it (Linux: PR_SET_PDEATHSIG), so a rebuild killed
at any instant leaves no writer behind, only cursors to resume from.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import redis

from adapters.collector import few_collections
from adapters.settings import Settings
from adapters.store_config import build_application
from api.child_processes import StopWhenOrphaned, configure_logging, die_with_parent
from domain.application import utc_now
from domain.ports import Clock
from projections.catalog import Catalog
from projections.rebuild import BuildShares
from projections.stream_build import Plan, StreamBuilder
from projections.versions import VersionPointer

POLL_SECONDS = 0.5


def _build_share(
    settings: Settings,
    versions: Mapping[str, int],
    chosen: Plan,
    index: int,
    halt: Any,  # multiprocessing.Event
    parent: int,
    clock: Clock,
) -> None:
    die_with_parent()
    configure_logging(f"rebuild share {index}/{chosen.shares}")
    from api.bootstrap import read_model_factories  # bootstrap imports this module

    # Each stream is read once, in one page or two: keys for the pages in flight suffice.
    reader = build_application(settings, utc_now, cache=False, key_cache=2 * settings.rebuild_batch)
    client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        factories = read_model_factories(settings, clock, client)
        catalog = Catalog(factories, VersionPointer(client, settings.redis_namespace))
        models = [catalog.at(name, version, live=False) for name, version in versions.items()]
        builder = StreamBuilder(
            reader.recorder,  # type: ignore[arg-type]  # our ProfileRecorder
            reader.mapper,
            client,
            models,
            chosen,
            chosen.share(index),
            batch_size=settings.rebuild_batch,
        )
        with few_collections():
            builder.run(StopWhenOrphaned(halt, parent))
    finally:
        reader.close()
        client.close()


def share_workers(settings: Settings, clock: Clock) -> BuildShares:
    """What `Rebuild` calls to build a stream pass's shares, one process each."""

    def run(
        chosen: Plan, versions: Mapping[str, int], indexes: Iterable[int], stop: threading.Event
    ) -> None:
        # spawn, not fork: this process holds pools, sockets and threads a fork would copy.
        context = multiprocessing.get_context("spawn")
        halt = context.Event()
        workers = [
            context.Process(
                target=_build_share,
                args=(settings, dict(versions), chosen, index, halt, os.getpid()),
                kwargs={"clock": clock},
                name=f"rebuild-share-{index}/{chosen.shares}",
                daemon=True,
            )
            for index in indexes
        ]
        for worker in workers:
            worker.start()
        try:
            while any(w.is_alive() for w in workers):
                if stop.wait(POLL_SECONDS):
                    halt.set()
        finally:
            halt.set()
            for worker in workers:
                worker.join()
        failed = [w.name for w in workers if w.exitcode != 0]
        if failed:
            raise RuntimeError(f"rebuild worker {', '.join(failed)} failed; run again to resume")

    return run
