"""`segments`: the projection with 50 segments defined, and one customer's segment state.

1. Throughput: 50 segments are defined, then customers (traits, consents) and interactions are
   seeded; catch_up() of all read models from position 0 is timed, then maintain() until idle
   (the back-fills of the 50 definitions). The limit is the same catch_up() of a copy of the
   same store with the 50 segment events deleted (an empty rule set), and raw Redis HINCRBY.
2. Memory: see bench.segment_memory.
"""

from __future__ import annotations

from adapters.store_config import build_application
from bench.common import Bench, Hung, say
from bench.limits import redis_hincrby
from bench.report import Row, Target, number
from bench.scenarios import Outcome
from bench.segment_memory import memory
from bench.segment_steps import (
    Projected,
    define_all,
    drop_segment_events,
    project,
    seed,
    stored_events,
)
from bench.segment_workload import SEGMENTS, SegmentWorkload
from domain.application import utc_now

CUSTOMERS = 10_000
SEED_UNIT = 500  # as the projection scenario: larger saves hang in psycopg's pipeline sync
TARGET = Target("value", ">=", 20_000, ">= 20,000/s")


def run(bench: Bench) -> Outcome:
    outcome = throughput(bench)
    bench.cleanup()  # the first part's databases and keys are not needed any more
    more = memory(bench)
    outcome.rows += more.rows
    outcome.details["memory"] = more.details
    outcome.failures += more.failures
    return outcome


def throughput(bench: Bench) -> Outcome:
    interactions = bench.pick(100_000, 50_000)
    deadline = bench.pick(1_800.0, 120.0)
    url = bench.new_database("segments")
    settings = bench.settings_for(url)
    source = SegmentWorkload(seed=5, label="seg", days=30)
    app = build_application(settings, utc_now)
    say(f"segments: defining {SEGMENTS} segments, then seeding {CUSTOMERS:,} customers")
    try:
        defined_at = define_all(app)
        spent = seed(app, source.profile_units(CUSTOMERS, SEED_UNIT), "segments")
        say(f"segments: seeding {interactions:,} interactions, units of {SEED_UNIT}")
        units = (
            source.interactions(SEED_UNIT, pool=CUSTOMERS) for _ in range(interactions // SEED_UNIT)
        )
        spent += seed(app, units, "segments")
    except Hung as hung:
        bench.terminate(url)
        return Outcome(failures=[f"segments: seeding execute() {hung}; nothing measured"])
    finally:
        app.close()
    events = stored_events(url)
    bare_url = bench.clone_database(url, "segments_bare")
    dropped = drop_segment_events(bare_url)
    bare_events = stored_events(bare_url)

    say(f"segments: {SEGMENTS} segments: catch_up() of {events:,} events from position 0")
    with_segments = project(bench, settings, "segments", deadline)
    rate = events / with_segments.catch_up
    say(f"segments:   {rate:,.0f} events/s")

    say(f"segments: limit: no segments (copy, {dropped} segment events deleted): catch_up()")
    bare = project(bench, bench.settings_for(bare_url), "segments-bare", deadline)
    bare_rate = bare_events / bare.catch_up
    say(f"segments:   {bare_rate:,.0f} events/s")

    say(f"segments: limit: Redis pipelines of 1,000 HINCRBY, {events:,} ops, one client")
    limit = redis_hincrby(bench.redis_url, bench.new_namespace("hincrby"), events, CUSTOMERS)
    say(f"segments:   {limit.per_second:,.0f} ops/s")

    outcome = Outcome(
        details={
            "segments": SEGMENTS,
            "customers": CUSTOMERS,
            "interactions": interactions,
            "events": events,
            "defined_at": defined_at,
            "seed_seconds": spent,
            "with_segments": with_segments.as_dict(),
            "without_segments": {"events": bare_events, **bare.as_dict()},
            "redis": limit.as_dict(),
            "backfill_profile_settles": SEGMENTS * CUSTOMERS,
        }
    )
    figure = f"catch_up() from 0, {events:,} events, {SEGMENTS} segments"
    outcome.rows = [
        Row("segments", figure, rate, "/s", "same, 0 segments", bare_rate, [TARGET]),
        Row(
            "segments",
            f"catch_up() from 0, {bare_events:,} events, 0 segments",
            bare_rate,
            "/s",
            "Redis HINCRBY, 1,000/pipeline",
            limit.per_second,
            [TARGET],
        ),
        _backfill_row(with_segments, deadline),
    ]
    if with_segments.finished and with_segments.live != SEGMENTS:
        outcome.failures.append(
            f"segments: maintain() went idle with {with_segments.live} of {SEGMENTS} live"
        )
    if bare.live or bare.steps:
        outcome.failures.append(f"segments: the copy without segments had {bare.live} live")
    if dropped != SEGMENTS or bare_events != events - SEGMENTS:
        outcome.failures.append(f"segments: copy lost {events - bare_events} events, not 50")
    return outcome


def _backfill_row(projected: Projected, deadline: float) -> Row:
    """maintain() to idle; stopped at the deadline (--quick), extrapolated from the definitions
    that went live (each one's go-live re-evaluates every profile: about the same cost)."""
    figure = f"maintain() to idle: back-fill of {SEGMENTS} definitions"
    value, shown = projected.maintain * 1000, None
    if not projected.finished:
        figure += f" (stopped at {deadline:.0f}s, {projected.live} live; extrapolated)"
        value = value * SEGMENTS / max(projected.live, 1)
        shown = "~" + number(value, "ms")
    limit = f"its catch_up() ({SEGMENTS} segments)"
    return Row("segments", figure, value, "ms", limit, projected.catch_up * 1000, shown=shown)
