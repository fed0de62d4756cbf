"""`projection`: Projector.catch_up() over a seeded store, from position 0."""

from __future__ import annotations

import os
import time
from functools import partial

import psycopg

from adapters.store_config import build_application
from adapters.telemetry import setup_telemetry
from api.bootstrap import build_projector
from bench.common import Bench, Hung, guarded, say
from bench.limits import redis_hincrby
from bench.profiling import sampled
from bench.report import Row, Target
from bench.scenarios import Outcome
from bench.workload import Interactions
from domain.application import utc_now

CUSTOMERS = 20_000
# Seeding only (not a measured figure). Units of 1,000 would put ~2,000 events (each new customer
# adds a Registered event) into the first transactions, and saves of ~1,500+ events hang in
# psycopg 3.3.9's pipeline sync (see the batched scenario); 500 stays clear of that.
SEED_UNIT = 500
TIMEOUT = 10.0
TARGET = Target("value", ">=", 20_000, ">= 20,000/s")


def run(bench: Bench) -> Outcome:
    interactions = bench.pick(200_000, 100_000)
    url = bench.new_database("projection")
    settings = bench.settings_for(url)
    say(f"projection: seeding {interactions:,} interactions over {CUSTOMERS:,} customers")
    app = build_application(settings, utc_now)
    source = Interactions(CUSTOMERS, seed=4, label="proj")
    spent = 0.0
    try:
        for n in range(interactions // SEED_UNIT):
            unit = source.unit(SEED_UNIT)
            started = time.perf_counter()
            guarded(partial(app.execute, [unit]), TIMEOUT)
            spent += time.perf_counter() - started
            if (n + 1) % (50_000 // SEED_UNIT) == 0:
                done = (n + 1) * SEED_UNIT
                say(f"projection:   {done:,} seeded ({done / spent:,.0f}/s)")
    except Hung as hung:
        bench.terminate(url)
        return Outcome(failures=[f"projection: seeding execute() {hung}; nothing measured"])
    finally:
        app.close()
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM profiles_events").fetchone()
    events = int(row[0]) if row else 0

    say(f"projection: catch_up() of {events:,} events from position 0")
    telemetry = setup_telemetry(settings)
    projector, reader, wakeup = build_projector(settings, telemetry)
    try:
        with sampled(bench.profile, os.getpid(), bench.artifact("projection-catch-up.raw")):
            started = time.perf_counter()
            applied = projector.catch_up()
            elapsed = time.perf_counter() - started
    finally:
        wakeup.close()
        reader.close()
        telemetry.shutdown()
    rate = applied / elapsed
    say(f"projection:   {rate:,.0f} events/s")

    say(f"projection: limit: Redis pipelines of 1,000 HINCRBY, {applied:,} ops, one client")
    limit = redis_hincrby(bench.redis_url, bench.new_namespace("hincrby"), applied, CUSTOMERS)
    say(f"projection:   {limit.per_second:,.0f} ops/s")

    outcome = Outcome(
        details={
            "interactions": interactions,
            "customers": CUSTOMERS,
            "events": events,
            "applied": applied,
            "seconds": elapsed,
            "seed_interactions_per_second": interactions / spent,
            "redis": limit.as_dict(),
        }
    )
    figure = f"catch_up() from 0, {applied:,} events"
    hincrby = "Redis HINCRBY, 1,000/pipeline"
    outcome.rows = [
        Row("projection", figure, rate, "/s", hincrby, limit.per_second, [TARGET]),
    ]
    if applied != events:
        outcome.failures.append(f"projection: applied {applied:,} of {events:,} stored events")
    return outcome
