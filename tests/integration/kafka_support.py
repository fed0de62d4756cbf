"""Kafka helpers for the integration tests: per-test topics, producing, reading a topic whole,
an ingest worker on a thread, and what the event store holds."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from adapters.kafka_ingest import IngestWorker
from adapters.kafka_io import ensure_topics
from adapters.settings import KafkaSettings, Settings
from adapters.store_config import build_application
from domain.application import utc_now

# A generous bound on waits, so that a broken worker fails the test instead of hanging it.
PATIENCE = 180.0
ROOT = Path(__file__).resolve().parents[2]


def kafka_settings(settings: Settings, bootstrap: str) -> Settings:
    """The test's settings with topics and a group of its own on the shared broker."""
    tag = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(
        interactions_topic=f"interactions-{tag}",
        dlq_topic=f"interactions-{tag}.dlq",
        events_topic=f"profile-events-{tag}",
        segment_changes_topic=f"segment-changes-{tag}",
        group_id=f"ingest-{tag}",
        ingest_batch=200,
        session_timeout_ms=6_000,  # Tansu: a dead member's partitions move within seconds
    )
    configured = replace(settings, kafka_bootstrap_servers=bootstrap, kafka=kafka)
    ensure_topics(configured)
    return configured


def interaction(event_id: str, customer: str, **extra: Any) -> dict[str, Any]:
    occurred = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    return {
        "eventId": event_id,
        "customerId": customer,
        "type": "page_view",
        "occurredAt": occurred,
        **extra,
    }


def produce(
    settings: Settings,
    messages: Sequence[tuple[str | None, bytes | dict[str, Any]]],
    *,
    partition: int | None = None,
) -> None:
    """(key, value) pairs to the interactions topic; dict values are sent as JSON."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "linger.ms": 5})
    for key, value in messages:
        body = value if isinstance(value, bytes) else orjson.dumps(value)
        if partition is None:
            producer.produce(settings.kafka.interactions_topic, body, key)
        else:
            producer.produce(settings.kafka.interactions_topic, body, key, partition=partition)
    assert producer.flush(30) == 0, "the broker did not take every test message"


def read_topic(settings: Settings, topic: str) -> list[Message]:
    """Every record of every partition, from offset 0 to the end, each partition in order."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {}
        for p in partitions:
            ends[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        wanted = [TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0]
        if not wanted:
            return []
        consumer.assign(wanted)
        got: list[Message] = []
        deadline = time.monotonic() + PATIENCE
        while len(got) < sum(ends.values()):
            assert time.monotonic() < deadline, f"read {len(got)} of {sum(ends.values())}"
            got += [m for m in consumer.consume(500, timeout=0.5) if m.error() is None]
        return got
    finally:
        consumer.close()


@contextmanager
def ingesting(settings: Settings) -> Iterator[IngestWorker]:
    """An ingest worker consuming on a thread until the block ends."""
    app = build_application(settings, utc_now)
    worker = IngestWorker(app, settings)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(timeout=30)
        app.close()


def ingest_process(
    settings: Settings, *, processes: int, batch: int, stderr: int = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    """`profiles ingest` as its own process (with `processes` consumer children when > 1)."""
    kafka = settings.kafka
    env = {
        **os.environ,
        "DATABASE_URL": str(settings.database_url),
        "KAFKA_BOOTSTRAP_SERVERS": str(settings.kafka_bootstrap_servers),
        "PROFILES_KAFKA_INTERACTIONS_TOPIC": kafka.interactions_topic,
        "PROFILES_KAFKA_DLQ_TOPIC": kafka.dlq_topic,
        "PROFILES_KAFKA_GROUP_ID": kafka.group_id,
        "PROFILES_KAFKA_SESSION_TIMEOUT_MS": str(kafka.session_timeout_ms),
        "PROFILES_INGEST_BATCH": str(batch),
        "PROFILES_INGEST_PROCESSES": str(processes),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "ingest"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def children_of(pid: int) -> list[int]:
    """The live processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stored_offsets(settings: Settings) -> int:
    """The sum of the group's next offsets in Postgres: how many messages it has consumed."""
    with psycopg.connect(str(settings.database_url)) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(next_offset), 0) FROM profiles_consumer_offsets "
            "WHERE group_id = %s AND topic = %s",
            (settings.kafka.group_id, settings.kafka.interactions_topic),
        ).fetchone()
    return int(row[0]) if row else 0


def wait_consumed(settings: Settings, total: int) -> None:
    deadline = time.monotonic() + PATIENCE
    while (done := stored_offsets(settings)) < total:
        assert time.monotonic() < deadline, f"consumed {done} of {total} messages"
        time.sleep(0.05)
    assert done == total, f"offsets moved past the {total} messages produced: {done}"


def event_counts(settings: Settings) -> dict[str, int]:
    """Stored events by class name."""
    with psycopg.connect(str(settings.database_url)) as conn:
        rows = conn.execute(
            "SELECT split_part(topic, '.', -1), count(*) FROM profiles_events GROUP BY 1"
        ).fetchall()
    return {name: int(n) for name, n in rows}


def header(message: Message, name: str) -> str | None:
    raw = message.headers() or []
    headers = list(raw.items()) if isinstance(raw, dict) else list(raw)
    for key, value in headers:
        if key == name:
            return value.decode() if isinstance(value, bytes) else value
    return None
