"""`kafka`: interactions produced to the topic until stored by `profiles ingest`, end to end.

The clock runs from the first message handed to the producer until the last is stored; the
messages' JSON is made before it starts. `profiles ingest` runs as it is deployed:
PROFILES_INGEST_PROCESSES consumer processes (2 by default), on a topic with two partitions per
process so that each gets an equal share. The clock starts once every process holds its
partitions (from their "assigned" log lines) and has stored a warm-up message on each: a group
still forming would rebalance mid-run."""

from __future__ import annotations

import signal
import statistics
import subprocess
import threading
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
from confluent_kafka import Producer

from adapters.kafka_io import ensure_topics
from adapters.settings import KafkaSettings, Settings
from bench.common import Bench, say
from bench.ingest_process import Assignments, children, ingest_process, processes_cpu
from bench.limits import raw_copy
from bench.report import Row, Target
from bench.scenarios import Outcome
from bench.service import cpu_sample, cpu_usage
from bench.workload import customer_id, raw_interaction

POOL = 10_000
INGEST = Target("value", ">=", 20_000, ">= 20,000/s")
SHARE = Target("ratio", ">=", 0.30, ">= 30% of COPY")
PATIENCE = 600.0  # seconds without progress before the scenario gives up


@dataclass
class _Round:
    rate: float  # interactions/s, first produce() to last stored
    steady: float  # interactions/s between 10% and 90% stored
    seconds: float
    produce_seconds: float
    stored: int  # interactions in the store (the warm-up ones included)
    ingest_cpu_us: float  # CPU of all ingest processes per interaction stored
    machine_cores: float  # cores busy on the whole machine meanwhile (of os.cpu_count())


def run(bench: Bench) -> Outcome:
    outcome = Outcome()
    count = bench.pick(100_000, 30_000)
    processes = bench.settings.kafka.ingest_processes
    partitions = 2 * processes
    workers = f"{processes} process" + ("es" if processes > 1 else "")
    # The figure is the median of rounds, each on a new database and topic: on a shared 2-core
    # VM one round's rate varied by a fifth from the next.
    rounds: list[_Round] = []
    for number in range(1, bench.pick(3, 1) + 1):
        say(
            f"kafka: round {number}: producing {count:,} interactions while `profiles ingest` "
            f"({workers}, {partitions} partitions) stores them"
        )
        done = _round(bench, count, processes, partitions)
        say(
            f"kafka:   {done.rate:,.0f} interactions/s end to end, {done.steady:,.0f}/s from "
            f"10% to 90% stored (produced in {done.produce_seconds:.1f}s); ingest CPU "
            f"{done.ingest_cpu_us:.0f} us per interaction, machine {done.machine_cores:.2f} "
            "cores busy"
        )
        if done.stored != count + partitions:
            outcome.failures.append(
                f"kafka: {done.stored:,} interactions stored of {count + partitions:,}"
            )
        rounds.append(done)
    rate = statistics.median(r.rate for r in rounds)
    say(f"kafka: limit: raw COPY (binary) of {count:,} event-sized rows")
    copy = raw_copy(bench.new_database("kafka_copy", migrated=False), count)
    say(f"kafka:   {copy.per_second:,.0f} rows/s")
    shown = f"median of {len(rounds)}, " if len(rounds) > 1 else ""
    outcome.rows = [
        Row(
            "kafka",
            f"ingest ({workers}), produce -> stored, {count:,} messages ({shown}end to end)",
            rate,
            "/s",
            f"raw COPY, {count:,} rows",
            copy.per_second,
            [INGEST, SHARE],
        ),
        Row(
            "kafka",
            "  steady: 10% to 90% stored (median)",
            statistics.median(r.steady for r in rounds),
            "/s",
        ),
    ]
    outcome.details.update(
        count=count,
        processes=processes,
        partitions=partitions,
        rounds=[asdict(r) for r in rounds],
        copy=copy.as_dict(),
    )
    return outcome


def _round(bench: Bench, count: int, processes: int, partitions: int) -> _Round:
    tag = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(
        interactions_topic=f"bench-interactions-{tag}",
        dlq_topic=f"bench-interactions-{tag}.dlq",
        group_id=f"bench-{tag}",
        session_timeout_ms=6_000,
    )
    settings = replace(bench.settings_for(bench.new_database("kafka")), kafka=kafka)
    ensure_topics(settings, partitions=partitions)
    worker = ingest_process(settings)
    assignments = Assignments(worker, processes)
    progress: list[tuple[float, int]] = []
    try:
        warm = [(p, *_message("warm-up", p)) for p in range(partitions)]
        _produce(settings, warm)
        _wait_stored(settings, partitions, worker)
        assignments.wait_settled(partitions, PATIENCE)
        # The trackers' JSON is made before the clock starts: it is the senders' work, not the
        # pipeline's, and on two cores it would take CPU from the service being measured.
        messages = [(None, *_message(tag, n)) for n in range(1, count + 1)]
        ingest = processes_cpu([worker.pid, *children(worker.pid)])
        machine = cpu_sample(worker.pid)
        started = time.perf_counter()
        producer = threading.Thread(target=_produce, args=(settings, messages))
        producer.start()
        producer.join()
        produced = time.perf_counter() - started
        _wait_stored(settings, count + partitions, worker, progress)
        elapsed = time.perf_counter() - started
        ingest = processes_cpu([worker.pid, *children(worker.pid)]) - ingest
        cores = cpu_usage(machine, cpu_sample(worker.pid))["machine_busy_cores"]
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    rate, steady = count / elapsed, _steady(progress, count)
    stored = _interactions(settings)
    return _Round(rate, steady, elapsed, produced, stored, ingest / count * 1e6, cores)


def _steady(progress: list[tuple[float, int]], count: int) -> float:
    """The rate between the samples nearest 10% and 90% of the messages stored."""
    low = next((p for p in progress if p[1] >= count // 10), progress[0])
    high = next((p for p in progress if p[1] >= count * 9 // 10), progress[-1])
    return (high[1] - low[1]) / (high[0] - low[0]) if high[0] > low[0] else float("nan")


def _message(tag: str, n: int) -> tuple[bytes, bytes]:
    who = customer_id(n % POOL)
    occurred = datetime.now(UTC) - timedelta(seconds=30)
    return who.encode(), orjson.dumps(raw_interaction(f"{tag}-{n}", who, occurred, n % 100_000))


def _produce(settings: Settings, messages: object) -> None:
    producer = Producer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "linger.ms": 20, "acks": "all"}
    )
    for partition, key, value in messages:  # type: ignore[attr-defined]
        where = {} if partition is None else {"partition": partition}
        while True:
            try:
                producer.produce(settings.kafka.interactions_topic, value, key, **where)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(60):
        raise RuntimeError("the broker did not take every bench message")


def _wait_stored(
    settings: Settings,
    total: int,
    worker: subprocess.Popen[bytes],
    progress: list[tuple[float, int]] | None = None,
) -> None:
    """Until `total` messages are stored; `progress` gets (monotonic time, stored) samples.

    One connection polls: a connection per poll made Postgres fork a backend 50 times a
    second, CPU taken from the service being measured."""
    last, moved = -1, time.monotonic()
    with psycopg.connect(str(settings.database_url), autocommit=True) as conn:
        while (done := _consumed(conn, settings.kafka.group_id)) < total:
            if progress is not None:
                progress.append((time.monotonic(), done))
            if done != last:
                last, moved = done, time.monotonic()
            if worker.poll() is not None or time.monotonic() - moved > PATIENCE:
                raise RuntimeError(f"ingest stalled at {done:,} of {total:,} messages")
            time.sleep(0.05)


def _consumed(conn: psycopg.Connection[tuple[object, ...]], group: str) -> int:
    row = conn.execute(
        "SELECT coalesce(sum(next_offset), 0) FROM profiles_consumer_offsets WHERE group_id = %s",
        (group,),
    ).fetchone()
    return int(str(row[0])) if row else 0


def _interactions(settings: Settings) -> int:
    with psycopg.connect(str(settings.database_url)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM profiles_events WHERE topic LIKE '%InteractionRecorded'"
        ).fetchone()
    return int(row[0]) if row else 0
