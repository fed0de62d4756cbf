"""Part 2 of `segments`: the segment state of ONE customer with a long history.

With 50 segments defined, one customer records interactions in units of 1,000 (mixed types and
categories, occurredAt moving through 60 days, a tenth recorded up to 3 days late); after every
10,000 the projector catches up and the customer's facts key is measured with MEMORY USAGE,
beside its profile hash. The facts keep at most `atLeast` times per condition key, so the size
should stay flat however long the history grows.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import redis

from adapters.store_config import build_application
from bench.common import Bench, Hung, guarded, say
from bench.report import Row
from bench.scenarios import Outcome
from bench.segment_steps import TIMEOUT, define_all, projector_for, settle
from bench.segment_workload import SEGMENTS, SegmentWorkload
from domain.application import utc_now
from domain.ids import customer_uuid
from projections.profile import ProfileKeys
from projections.segments import SegmentKeys

LONG = "one-long-history"
UNIT = 1_000
CHECK_EVERY = 10_000
FLAT = 1.5  # the facts after the whole history may be at most this much bigger than at 10,000


def _sizes(client: redis.Redis, namespace: str) -> dict[str, int]:
    uid = customer_uuid(LONG)
    facts = SegmentKeys(namespace).facts(uid)
    profile = ProfileKeys(namespace).profile(uid)
    recent = ProfileKeys(namespace).recent(uid)
    raw = client.get(facts)
    return {
        "facts_memory": int(client.memory_usage(facts, samples=0) or 0),
        "facts_json": len(raw) if isinstance(raw, bytes) else 0,
        "profile_memory": int(client.memory_usage(profile, samples=0) or 0),
        "recent_memory": int(client.memory_usage(recent, samples=0) or 0),
    }


def memory(bench: Bench) -> Outcome:
    total = bench.pick(100_000, 30_000)
    url = bench.new_database("segments_memory")
    settings = bench.settings_for(url)
    namespace = settings.redis_namespace
    source = SegmentWorkload(seed=9, label="mem", days=60)
    client = redis.Redis.from_url(bench.redis_url)
    app = build_application(settings, utc_now)
    series: dict[int, dict[str, Any]] = {}
    say(f"segments: memory: {SEGMENTS} segments, {total:,} interactions of one customer")
    try:
        define_all(app)
        with projector_for(settings) as projector:
            done, seeding = 0, 0.0
            while done < total:
                started = time.perf_counter()
                for _ in range(CHECK_EVERY // UNIT):
                    unit = source.interactions(UNIT, customer=LONG, progress=done / total)
                    guarded(partial(app.execute, [unit]), TIMEOUT)
                    done += UNIT
                seeding += time.perf_counter() - started
                started = time.perf_counter()
                projector.catch_up()
                caught_up = time.perf_counter() - started
                maintained, _, _ = settle(projector, 120.0)
                series[done] = {
                    **_sizes(client, namespace),
                    "catch_up_seconds": caught_up,
                    "maintain_seconds": maintained,
                }
                sizes = series[done]
                say(
                    f"segments:   {done:,}: facts {sizes['facts_memory']:,} B "
                    f"(JSON {sizes['facts_json']:,}), profile hash {sizes['profile_memory']:,} B, "
                    f"catch_up {caught_up:.2f}s"
                )
    except Hung as hung:
        bench.terminate(url)
        return Outcome(failures=[f"segments: memory: execute() {hung}; nothing measured"])
    finally:
        app.close()
        client.close()

    first, last = series[min(series)], series[max(series)]
    outcome = Outcome(
        details={
            "interactions": total,
            "seed_seconds": seeding,
            "series": {str(k): v for k, v in series.items()},
        }
    )
    at = f"{max(series):,}"
    at_first = f"{min(series):,}"
    outcome.rows = [
        Row(
            "segments",
            f"1 customer's segment facts, {at} interactions (MEMORY USAGE)",
            last["facts_memory"],
            " B",
            "its profile hash (MEMORY USAGE)",
            last["profile_memory"],
        ),
        Row(
            "segments",
            f"1 customer's segment facts, {at} interactions (MEMORY USAGE)",
            last["facts_memory"],
            " B",
            f"same key after {at_first} interactions",
            first["facts_memory"],
        ),
        Row(
            "segments",
            f"1 customer's segment facts, {at} interactions (JSON length)",
            last["facts_json"],
            " B",
            f"same key after {at_first} interactions",
            first["facts_json"],
        ),
    ]
    if last["facts_memory"] > FLAT * first["facts_memory"]:
        outcome.failures.append(
            f"segments: facts grew from {first['facts_memory']:,} B at {at_first} interactions "
            f"to {last['facts_memory']:,} B at {at}: not flat"
        )
    return outcome
