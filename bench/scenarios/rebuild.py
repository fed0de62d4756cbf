"""`rebuild`: `profiles rebuild --all` of ~1,000,000 events, timed, with its peak memory.

The store is seeded first (5 segments, 50,000 customers with traits and consents, interactions
of seven types with trait and consent changes mixed in; not measured). The rebuild of profile,
score and segments runs in a process of its own (with the worker processes that share its stream
pass, `PROFILES_REBUILD_PROCESSES`), so the peak RSS is the sum of theirs. Limits measured in
the same run: raw Redis HINCRBY in pipelines, as many ops as events, and a raw streamed read of
the same rows from Postgres.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import psycopg

from adapters.settings import Settings
from bench.common import Bench, say
from bench.limits import postgres_read, redis_hincrby
from bench.profiling import sampled
from bench.rebuild_workload import CUSTOMERS, SEGMENTS, seed
from bench.report import Row, Target
from bench.scenarios import Outcome

SEED_WORKERS = 3  # on 2 cores: Postgres takes a share of the CPU while the workers prepare units
SECONDS_PER_MILLION = Target("value", "<=", 60.0, "<= 60 s")
RATE = Target("value", ">=", 1_000_000 / 60, ">= 16,667/s")
MEMORY = Target("value", "<=", 300.0, "<= 300 MB")


def run(bench: Bench) -> Outcome:
    wanted = bench.pick(1_000_000, 200_000)
    url = bench.new_database("rebuild")
    settings = bench.settings_for(url)
    say(f"rebuild: seeding ~{wanted:,} events, {CUSTOMERS:,} customers, {SEGMENTS} segments")
    seeded, seed_seconds = seed(settings, wanted, SEED_WORKERS, "rb")
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM profiles_events").fetchone()
    events = int(row[0]) if row else 0
    rate = seeded / seed_seconds
    say(f"rebuild:   {events:,} events stored in {seed_seconds:.0f}s ({rate:,.0f}/s)")

    say(f"rebuild: profiles rebuild --all, {events:,} events, separate process")
    child = _rebuild(bench, url, settings)
    rate = child["events"] / child["seconds"]
    per_million = 1_000_000 / rate
    say(
        f"rebuild:   {rate:,.0f} events/s ({per_million:.0f} s per 1M), "
        f"peak RSS {child['peak_rss_mb']:.0f} MB, at {child['rss_at_mb']}"
    )

    say(f"rebuild: limit: Redis pipelines of 1,000 HINCRBY, {events:,} ops, one client")
    hincrby = redis_hincrby(bench.redis_url, bench.new_namespace("hincrby"), events, CUSTOMERS)
    say(f"rebuild:   {hincrby.per_second:,.0f} ops/s")
    say("rebuild: limit: the same rows read from Postgres in order, server-side cursor")
    read = postgres_read(url)
    say(f"rebuild:   {read.per_second:,.0f} rows/s")

    outcome = Outcome(
        details={
            "events": events,
            "customers": CUSTOMERS,
            "segments": SEGMENTS,
            "batch": settings.rebuild_batch,
            "processes": settings.rebuild_processes,
            "seed_seconds": seed_seconds,
            "seed_workers": SEED_WORKERS,
            "rebuild": child,
            "redis": hincrby.as_dict(),
            "postgres_read": read.as_dict(),
        }
    )
    figure = f"rebuild --all, {child['events']:,} events"
    peak = child["peak_rss_mb"]
    outcome.rows = [
        Row("rebuild", figure, rate, "/s", "Redis HINCRBY, 1,000/pipeline", hincrby.per_second),
        Row("rebuild", "  same", rate, "/s", "Postgres read, same rows", read.per_second, [RATE]),
        Row(
            "rebuild",
            "  seconds per 1,000,000 events",
            per_million,
            " s",
            targets=[SECONDS_PER_MILLION],
        ),
        Row("rebuild", "  peak RSS of the rebuild process", peak, " MB", targets=[MEMORY]),
    ]
    if child["events"] != events:
        outcome.failures.append(f"rebuild: built {child['events']:,} of {events:,} events")
    return outcome


def _rebuild(bench: Bench, url: str, settings: Settings) -> dict[str, Any]:
    given = {
        "database_url": url,
        "redis_url": bench.redis_url,
        "namespace": settings.redis_namespace,
        "batch": settings.rebuild_batch,
        "processes": settings.rebuild_processes,
    }
    command = [sys.executable, "-m", "bench.rebuild_child", json.dumps(given)]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=os.environ.copy())
    with sampled(bench.profile, process.pid, bench.artifact("rebuild.raw")):
        out, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"rebuild process exited {process.returncode}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started
    return result
