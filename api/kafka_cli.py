"""`profiles ingest` and `profiles relay`; the workers themselves are in api.kafka_workers."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from adapters.kafka_io import ensure_topics
from adapters.settings import Settings
from api.ingest_processes import run_consumers
from api.kafka_workers import run_workers

logger = logging.getLogger("profiles")

COMMANDS = ("ingest", "relay")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, text in (
        ("ingest", "consume the interactions topic into the event store, exactly once"),
        ("relay", "publish stored domain events and segment changes to Kafka"),
    ):
        parser = sub.add_parser(name, help=f"{text} (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL)")
        parser.add_argument(
            "--metrics-port",
            type=int,
            help="serve Prometheus /metrics on this port (ingest in N processes: child K "
            "serves on this port + K)",
        )
        parser.add_argument(
            "--create-topics", action="store_true", help="create missing topics first (dev)"
        )
        if name == "ingest":
            parser.add_argument(
                "--processes",
                type=int,
                help="consumer processes, each with its share of the partitions "
                "(default: PROFILES_INGEST_PROCESSES, 2)",
            )


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "relay" and not settings.redis_url:
        print("profiles relay needs REDIS_URL for segment changes", flush=True)
        return 2
    if args.create_topics:
        ensure_topics(settings)
    chosen = getattr(args, "processes", None)
    if chosen is not None and chosen < 1:
        print(f"profiles ingest: --processes {chosen} must be at least 1", flush=True)
        return 2
    processes = chosen or settings.kafka.ingest_processes
    if args.command == "ingest" and processes > 1:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        return run_consumers(settings, processes, args.metrics_port, stop)
    logger.info("%s running", args.command)
    return run_workers(
        settings,
        ingest=args.command == "ingest",
        relay=args.command == "relay",
        metrics_port=args.metrics_port,
    )
