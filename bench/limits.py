"""The limits: what the same Postgres, Valkey and library do with nothing of ours in the way."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis

from bench.common import latency_summary, median_ms
from bench.plain import PAYLOAD, Counter, PlainApplication, plain_env
from bench.workload import SCRATCH_TABLE, TOPIC, event_rows, event_state

COLUMNS = "(originator_id, originator_version, topic, state)"


@dataclass
class Rate:
    count: int
    seconds: float
    latency: dict[str, float] = field(default_factory=dict)
    errors: int = 0

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "seconds": self.seconds,
            "per_second": self.per_second,
            "errors": self.errors,
            **self.latency,
        }


def raw_insert_loop(database_url: str, seconds: float) -> Rate:
    """One connection, autocommit: INSERT one event-sized row, commit, repeat."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SCRATCH_TABLE.format(name="scratch_events"))
        state = event_state()
        statement = f"INSERT INTO scratch_events {COLUMNS} VALUES (%s, %s, %s, %s)"
        cursor = conn.cursor()
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        while (now := time.perf_counter()) < deadline:
            cursor.execute(statement, (uuid.uuid4(), 1, TOPIC, state), prepare=True)
            latencies.append(time.perf_counter() - now)
        elapsed = time.perf_counter() - started
    return Rate(len(latencies), elapsed, latency_summary(latencies))


def raw_copy(database_url: str, rows: int) -> Rate:
    """COPY ... FROM STDIN (FORMAT BINARY) of `rows` event-sized rows in one transaction."""
    data = event_rows(rows)
    with psycopg.connect(database_url) as conn:
        conn.execute(SCRATCH_TABLE.format(name="scratch_copy"))
        conn.commit()
        started = time.perf_counter()
        statement = f"COPY scratch_copy {COLUMNS} FROM STDIN (FORMAT BINARY)"
        with conn.cursor() as cursor, cursor.copy(statement) as copy:
            copy.set_types(["uuid", "int8", "text", "bytea"])
            for row in data:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - started
    return Rate(rows, elapsed)


def drive_threads(
    threads: int, seconds: float, warmup: float, command: Callable[[int, int], None]
) -> Rate:
    """`threads` threads call command(thread, n) in a loop; counts what completes in the window."""
    start_line = threading.Barrier(threads + 1)
    window: list[float] = [0.0, 0.0]
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads

    def worker(index: int) -> None:
        start_line.wait()
        n = 0
        while (begun := time.perf_counter()) < window[1]:
            n += 1
            try:
                command(index, n)
            except Exception:
                errors[index] += 1
                continue
            done = time.perf_counter()
            if window[0] <= done <= window[1]:
                latencies[index].append(done - begun)

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    window[0] = time.perf_counter() + warmup
    window[1] = window[0] + seconds
    start_line.wait()
    for w in workers:
        w.join()
    merged = [x for per_thread in latencies for x in per_thread]
    return Rate(len(merged), seconds, latency_summary(merged), sum(errors))


def plain_concurrent(database_url: str, *, threads: int, seconds: float, pool: int) -> Rate:
    """The plain Application, `threads` threads, one command per save, short histories.

    Each thread owns its share of the customers, so no two commands race on one aggregate.
    """
    app = PlainApplication(plain_env(database_url, pool_size=threads, max_overflow=0))
    share = max(pool // threads, 1)
    try:

        def command(index: int, n: int) -> None:
            app.touch(f"c{(n * 7919) % share * threads + index:05d}")

        return drive_threads(threads, seconds, min(1.0, seconds / 5), command)
    finally:
        app.close()


@dataclass(frozen=True)
class History:
    long_ms: float  # median per command on the long aggregate
    new_ms: float  # median per command that starts a new aggregate
    seed_seconds: float


def plain_long_history(database_url: str, *, events: int, samples: int) -> History:
    """The plain Application, one thread: commands on an aggregate with `events` events."""
    app = PlainApplication(plain_env(database_url))
    try:
        started = time.perf_counter()
        counter = Counter.start("long")
        for n in range(1, events):
            counter.touch(PAYLOAD)
            # Saved 500 at a time: one save of ~1,500+ events hangs in psycopg 3.3.9's
            # pipeline sync. Setup only; the aggregate ends up the same.
            if n % 500 == 0:
                app.save(counter)
        app.save(counter)
        seeded = time.perf_counter() - started
        long, new = [], []
        for i in range(samples):
            begun = time.perf_counter()
            app.touch("long")
            long.append(time.perf_counter() - begun)
            begun = time.perf_counter()
            app.touch(f"new-{i}")
            new.append(time.perf_counter() - begun)
        return History(median_ms(long), median_ms(new), seeded)
    finally:
        app.close()


def redis_hincrby(redis_url: str, namespace: str, ops: int, keys: int) -> Rate:
    """One client, pipelines of 1,000 HINCRBY without MULTI, `ops` in all over `keys` hashes."""
    client = redis.Redis.from_url(redis_url)
    names = [f"{namespace}h:{{{i}}}" for i in range(keys)]
    try:
        started = time.perf_counter()
        for first in range(0, ops, 1_000):
            pipe = client.pipeline(transaction=False)
            for i in range(first, min(first + 1_000, ops)):
                pipe.hincrby(names[i % keys], "n:page_view", 1)
            pipe.execute()
        elapsed = time.perf_counter() - started
    finally:
        client.close()
    return Rate(ops, elapsed)


def postgres_read(database_url: str, table: str = "profiles_events", page: int = 10_000) -> Rate:
    """Every stored event in store order through a server-side cursor: what a rebuild's reads
    cost with no decoding, mapping or Redis behind them."""
    statement = (
        "SELECT notification_id, originator_id, originator_version, topic, state "
        f"FROM {table} ORDER BY notification_id"
    )
    rows = 0
    with psycopg.connect(database_url) as conn:
        started = time.perf_counter()
        with conn.cursor(name="limit_read") as cursor:
            cursor.itersize = page
            cursor.execute(statement)
            for _ in cursor:
                rows += 1
        elapsed = time.perf_counter() - started
    return Rate(rows, elapsed)
