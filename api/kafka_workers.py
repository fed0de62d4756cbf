"""The Kafka workers as threads: the ingest consumer and the two relays. `profiles ingest`,
`profiles relay`, each ingest child process (`run_workers`) and `profiles dev --kafka`
(`start_workers`, beside the API) all start them here."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from adapters.collector import tune_for_services
from adapters.kafka_ingest import IngestWorker
from adapters.kafka_io import Publisher, client_config
from adapters.kafka_relay import EventRelay
from adapters.segment_relay import SegmentChangeRelay
from adapters.settings import Settings
from adapters.store_config import build_application
from adapters.telemetry import Telemetry, setup_telemetry
from adapters.wakeup import PostgresWakeup
from api.health_http import HealthServer
from domain.application import utc_now
from projections.segments import SegmentKeys

logger = logging.getLogger("profiles")


@dataclass
class Workers:
    """Running Kafka workers; `stop` ends them and releases what they hold."""

    stop_event: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def start(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=_logged(name, target), name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def wait(self, poll: float = 0.5) -> int:
        """Until `stop_event` is set (0), or every worker has ended on its own (1: an error)."""
        while not self.stop_event.wait(poll):
            if not any(t.is_alive() for t in self.threads):
                return 1
        return 0

    def readiness(self) -> dict[str, str]:
        """For /readyz: each worker running, or stopped (it ended on an error)."""
        return {t.name: "ok" if t.is_alive() else "stopped" for t in self.threads}

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=30)
        for close in reversed(self.closers):
            close()


def _logged(name: str, target: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            target()
        except Exception:
            logger.exception("%s stopped on an error", name)

    return run


def start_workers(
    settings: Settings,
    telemetry: Telemetry,
    *,
    ingest: bool = True,
    relay: bool = True,
    stop_event: threading.Event | None = None,
) -> Workers:
    workers = Workers(stop_event or threading.Event())
    if ingest:
        tune_for_services()
        app = build_application(settings, utc_now)
        worker = IngestWorker(app, settings, telemetry)
        workers.closers.append(app.close)
        workers.start("ingest", lambda: worker.run(workers.stop_event))
    if relay:
        reader = build_application(settings, utc_now, cache=False)
        config = client_config(settings)
        events = EventRelay(
            reader,
            Publisher(config, "relay-events"),
            settings.kafka.events_topic,
            page=settings.kafka.relay_batch,
            telemetry=telemetry,
        )
        assert settings.database_url is not None
        wakeup = PostgresWakeup(settings.database_url)
        poll = settings.projection_poll_seconds
        workers.closers += [reader.close, wakeup.close, events.publisher.close]
        workers.start("relay-events", lambda: events.run(workers.stop_event, wakeup, poll))
        stream = SegmentKeys(settings.redis_namespace).changes
        changes = SegmentChangeRelay.build(settings, stream, reader, telemetry)
        workers.closers.append(changes.close)
        workers.start("relay-segments", lambda: changes.run(workers.stop_event, poll))
    return workers


def run_workers(
    settings: Settings,
    *,
    ingest: bool,
    relay: bool,
    metrics_port: int | None = None,
    stop_event: threading.Event | None = None,
) -> int:
    """Runs the chosen workers in this process, with their own telemetry (and /metrics,
    /healthz, /readyz on `metrics_port`), until SIGINT, SIGTERM or `stop_event` (0), or until
    every worker has ended on its own (1)."""
    telemetry = setup_telemetry(settings)
    workers = start_workers(settings, telemetry, ingest=ingest, relay=relay, stop_event=stop_event)
    server = None
    if metrics_port:
        name = "ingest" if ingest else "relay"
        server = HealthServer("0.0.0.0", metrics_port, telemetry, workers.readiness, name)
        server.start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: workers.stop_event.set())
    try:
        return workers.wait()
    finally:
        if server is not None:
            server.close()
        workers.stop()
        telemetry.shutdown()
