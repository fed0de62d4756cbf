"""`profiles ingest` as several consumer processes of one consumer group.

One Python process is held to one core by its GIL, and an ingest worker is CPU-bound (decoding,
events, encryption), so the worker runs in PROFILES_INGEST_PROCESSES spawned processes. Kafka's
group protocol hands each its own partitions; exactly-once is each worker's own (events and
offsets in one transaction, fenced by the stored offsets), so nothing here coordinates them.

Each child dies with its parent (PR_SET_PDEATHSIG): a `profiles ingest` killed at any instant
leaves no consumer behind, only stored offsets to resume from. A child that stops on an error
stops the others, and the command exits 1, as a one-process worker does, for the process
manager to restart.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from typing import Any

from adapters.settings import Settings
from api.child_processes import POLL_SECONDS, StopWhenOrphaned, configure_logging, die_with_parent
from api.kafka_workers import run_workers

logger = logging.getLogger("profiles")
GRACE_SECONDS = 40.0  # a child's worker joins its thread for up to 30 s before closing


def _consume(
    settings: Settings, index: int, metrics_port: int | None, halt: Any, parent: int
) -> None:
    die_with_parent()
    configure_logging(f"ingest {index}")
    stop = StopWhenOrphaned(halt, parent)  # SIGINT and SIGTERM set it too
    raise SystemExit(
        run_workers(settings, ingest=True, relay=False, metrics_port=metrics_port, stop_event=stop)
    )


def run_consumers(
    settings: Settings, processes: int, metrics_port: int | None, stop: threading.Event
) -> int:
    """Runs `processes` ingest children until `stop` is set (0) or one of them fails (1).
    With `metrics_port`, child K serves /metrics on metrics_port + K."""
    # spawn, not fork: a fork would copy this process's threads and sockets.
    context = multiprocessing.get_context("spawn")
    halt = context.Event()
    children = [
        context.Process(
            target=_consume,
            args=(
                settings,
                index,
                None if metrics_port is None else metrics_port + index,
                halt,
                os.getpid(),
            ),
            name=f"ingest-{index}",
            daemon=True,
        )
        for index in range(processes)
    ]
    for child in children:
        child.start()
    logger.info("ingest running in %d processes: %s", processes, [c.pid for c in children])
    failed: list[str] = []
    try:
        while not stop.wait(POLL_SECONDS):
            failed = [f"{c.name} (exit {c.exitcode})" for c in children if c.exitcode is not None]
            if failed:
                logger.error("%s stopped; stopping the others", ", ".join(failed))
                break
    finally:
        halt.set()
        for child in children:
            child.join(GRACE_SECONDS)
            if child.is_alive():
                logger.warning("%s did not stop in %.0fs; killing it", child.name, GRACE_SECONDS)
                child.kill()
                child.join()
    return 1 if failed else 0
