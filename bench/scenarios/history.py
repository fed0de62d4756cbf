"""`history`: does a customer's history length reach the command path (snapshots + cache)?"""

from __future__ import annotations

import time
from functools import partial
from typing import cast

import psycopg
from eventsourcing.postgres import PostgresApplicationRecorder

from adapters.settings import Settings
from adapters.store_config import build_application
from bench.common import Bench, Hung, guarded, median_ms, say
from bench.limits import plain_long_history
from bench.report import Row
from bench.scenarios import Outcome
from bench.workload import Interactions
from domain.application import ProfileApplication, utc_now
from domain.commands import RecordInteraction

SEED = 10_000
UNIT = 1_000
PLAIN_EVENTS = 2_000
LONG = "long-history"
TIMEOUT = 10.0


def _timed(app: ProfileApplication, command: RecordInteraction) -> float:
    started = time.perf_counter()
    app.record_interaction(command)
    return time.perf_counter() - started


def _fresh(settings: Settings) -> ProfileApplication:
    """A new application instance with its connection pool open: cold cache, warm sockets."""
    app = build_application(settings, utc_now)
    pool = cast(PostgresApplicationRecorder, app.recorder).datastore.pool
    pool.open(wait=True, timeout=30)
    return app


def run(bench: Bench) -> Outcome:
    warm_samples = 200
    cold_samples = bench.pick(200, 40)
    url = bench.new_database("history")
    settings = bench.settings_for(url)
    source = Interactions(1, label="hist")

    def command(customer: str) -> RecordInteraction:
        return source.unit(1, customer=customer)[0]

    app = _fresh(settings)
    try:
        say(f"history: seeding {SEED:,} interactions for one customer, units of {UNIT:,}")
        started = time.perf_counter()
        for _ in range(SEED // UNIT):
            guarded(partial(app.execute, [source.unit(UNIT, customer=LONG)]), TIMEOUT)
        seeded = time.perf_counter() - started
        say(f"history:   seeded in {seeded:.1f}s; warm: {warm_samples} commands each")
        warm_long, warm_new = [], []
        for i in range(warm_samples):
            long_cmd, new_cmd = command(LONG), command(f"new-warm-{i}")
            warm_long.append(_timed(app, long_cmd))
            warm_new.append(_timed(app, new_cmd))
    except Hung as hung:
        bench.terminate(url)
        return Outcome(failures=[f"history: seeding execute() {hung}; nothing measured"])
    finally:
        app.close()
    say(f"history: cold: {cold_samples} new application instances, one command each")
    cold_long, cold_new = [], []
    for i in range(cold_samples):
        fresh = _fresh(settings)
        try:
            long_cmd, new_cmd = command(LONG), command(f"new-cold-{i}")
            cold_long.append(_timed(fresh, long_cmd))
            cold_new.append(_timed(fresh, new_cmd))
        finally:
            fresh.close()
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), max(originator_version) FROM profiles_snapshots"
        ).fetchone()
    snapshots = {"count": row[0] if row else 0, "latest_version": row[1] if row else None}

    samples = bench.pick(20, 10)
    say(
        f"history: limit: plain eventsourcing app, {PLAIN_EVENTS:,}-event aggregate, "
        f"{samples} commands"
    )
    plain_url = bench.new_database("history_plain", migrated=False)
    plain = plain_long_history(plain_url, events=PLAIN_EVENTS, samples=samples)
    say(
        f"history:   {plain.long_ms:.1f} ms per command ({plain.new_ms:.2f} ms for a new aggregate)"
    )

    figures = {
        "new_warm_ms": median_ms(warm_new),
        "long_warm_ms": median_ms(warm_long),
        "new_cold_ms": median_ms(cold_new),
        "long_cold_ms": median_ms(cold_long),
    }
    say(
        "history:   median ms: "
        + ", ".join(f"{k.removesuffix('_ms')} {v:.2f}" for k, v in figures.items())
    )
    outcome = Outcome(details={**figures, "seed_seconds": seeded, "snapshots": snapshots})
    outcome.details.update(
        warm_samples=warm_samples,
        cold_samples=cold_samples,
        plain_long_ms=plain.long_ms,
        plain_new_ms=plain.new_ms,
        plain_samples=samples,
        long_over_new_warm=figures["long_warm_ms"] / figures["new_warm_ms"],
        long_over_new_cold=figures["long_cold_ms"] / figures["new_cold_ms"],
    )
    long_limit = f"plain es app, {PLAIN_EVENTS:,} events"
    new_limit = "plain es app, new aggregate"
    per = f"record_interaction, {SEED:,}-event customer"
    outcome.rows = [
        Row(
            "history",
            "record_interaction, new customer, warm",
            figures["new_warm_ms"],
            "ms",
            new_limit,
            plain.new_ms,
        ),
        Row("history", f"{per}, warm", figures["long_warm_ms"], "ms", long_limit, plain.long_ms),
        Row(
            "history",
            "record_interaction, new customer, cold",
            figures["new_cold_ms"],
            "ms",
            new_limit,
            plain.new_ms,
        ),
        Row("history", f"{per}, cold", figures["long_cold_ms"], "ms", long_limit, plain.long_ms),
    ]
    return outcome
