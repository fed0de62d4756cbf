"""`profiles ingest`, `profiles relay`, and both as threads beside `profiles dev --kafka`."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from adapters.collector import tune_for_writers
from adapters.kafka_ingest import IngestWorker
from adapters.kafka_io import Publisher, client_config
from adapters.kafka_io import ensure_topics as ensure_topics
from adapters.kafka_relay import EventRelay
from adapters.segment_relay import SegmentChangeRelay
from adapters.settings import Settings
from adapters.store_config import build_application
from adapters.telemetry import Telemetry, setup_telemetry
from adapters.wakeup import PostgresWakeup
from domain.application import utc_now
from projections.segments import SegmentKeys

logger = logging.getLogger("profiles")

COMMANDS = ("ingest", "relay")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, text in (
        ("ingest", "consume the interactions topic into the event store, exactly once"),
        ("relay", "publish stored domain events and segment changes to Kafka"),
    ):
        parser = sub.add_parser(name, help=f"{text} (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL)")
        parser.add_argument(
            "--metrics-port", type=int, help="serve Prometheus /metrics on this port"
        )
        parser.add_argument(
            "--create-topics", action="store_true", help="create missing topics first (dev)"
        )


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
    settings: Settings, telemetry: Telemetry, *, ingest: bool = True, relay: bool = True
) -> Workers:
    workers = Workers()
    if ingest:
        tune_for_writers()
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


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "relay" and not settings.redis_url:
        print("profiles relay needs REDIS_URL for segment changes", flush=True)
        return 2
    if args.create_topics:
        ensure_topics(settings)
    telemetry = setup_telemetry(settings)
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, registry=telemetry.registry)
    workers = start_workers(
        settings, telemetry, ingest=args.command == "ingest", relay=args.command == "relay"
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: workers.stop_event.set())
    logger.info("%s running", args.command)
    try:
        while not workers.stop_event.wait(0.5):
            if not any(t.is_alive() for t in workers.threads):
                return 1
    finally:
        workers.stop()
        telemetry.shutdown()
    return 0
