"""The embedded servers that dev and the tests run on."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from confluent_kafka import Consumer, Producer
from redis.cluster import RedisCluster

from adapters.embedded import (
    start_postgres,
    start_stack,
    start_valkey,
    start_valkey_cluster,
    tansu_command,
)
from adapters.settings import Settings


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    # Outside pytest's tmp dir, which is mode 0700: embedded Postgres may run as another user.
    path = Path(tempfile.mkdtemp(prefix="profiles-embedded-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_tansu_listens_in_memory_on_loopback_only() -> None:
    assert tansu_command("tansu", 1234) == [
        "tansu",
        "broker",
        "--listener-url",
        "tcp://127.0.0.1:1234",
        "--advertised-listener-url",
        "tcp://127.0.0.1:1234",
        "--storage-engine",
        "memory://tansu/",
    ]


def test_kafka_round_trip_through_a_consumer_group(kafka_bootstrap: str) -> None:
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=b"k", value=b"hello")
    assert producer.flush(10) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"group-{topic}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        received = None
        while received is None and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                received = message
        assert received is not None, "no message within 30 s"
        assert (received.key(), received.value()) == (b"k", b"hello")
        consumer.commit(message=received, asynchronous=False)
    finally:
        consumer.close()


def test_valkey_in_persistent_mode_keeps_data_across_restarts(scratch_dir: Path) -> None:
    first = start_valkey(scratch_dir, persist=True)
    try:
        redis.Redis.from_url(first.url).set("kept", "yes")
    finally:
        first.stop()
    second = start_valkey(scratch_dir, persist=True)
    try:
        assert redis.Redis.from_url(second.url).get("kept") == b"yes"
    finally:
        second.stop()


def test_valkey_cluster_serves_every_slot_from_three_masters(scratch_dir: Path) -> None:
    cluster = start_valkey_cluster(scratch_dir, masters=3)
    ports: list[int] = []
    try:
        client = RedisCluster.from_url(cluster.url, decode_responses=True)
        masters = client.get_primaries()
        ports = [int(node.port) for node in masters]
        assert len(masters) == 3
        ranges = client.cluster_slots()  # (first, last) -> its primary
        slots = {slot for first, last in ranges for slot in range(first, last + 1)}
        # 16,384 slots, and keys that fall on every master come back from their own one
        keys = [f"k{n}" for n in range(60)]
        for key in keys:
            client.set(key, key.upper())
        assert {client.get_node_from_key(k).port for k in keys} == {n.port for n in masters}
        assert [client.get(k) for k in keys] == [k.upper() for k in keys]
        assert len(slots) == 16_384
        client.close()
    finally:
        cluster.stop()
    assert ports and not any(_accepts_on(port) for port in ports)  # stopped, every node


def _accepts_on(port: int) -> bool:
    try:
        redis.Redis(port=port, socket_connect_timeout=0.5).ping()
    except redis.ConnectionError:
        return False
    return True


def test_postgres_keeps_data_across_restarts(scratch_dir: Path) -> None:
    first = start_postgres(scratch_dir)
    try:
        assert first.url.startswith("postgresql://") and "/profiles?" in first.url
        with psycopg.connect(first.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (id int)")
    finally:
        first.stop()
    second = start_postgres(scratch_dir, delete_on_stop=True)
    try:
        with psycopg.connect(second.url) as conn:
            assert conn.execute("SELECT to_regclass('kept')").fetchone() == ("kept",)
    finally:
        second.stop()
    assert not (scratch_dir / "postgres").exists()


def test_stack_starts_only_what_settings_lack(database_url: str, scratch_dir: Path) -> None:
    given = Settings(database_url=database_url, redis_url=None, data_dir=scratch_dir)
    settings, stop = start_stack(given, kafka=False, temporary=True)
    try:
        assert settings.database_url == database_url
        assert settings.kafka_bootstrap_servers is None
        assert settings.redis_url is not None
        assert redis.Redis.from_url(settings.redis_url).ping()
    finally:
        stop()
    stop()  # a second stop is harmless
