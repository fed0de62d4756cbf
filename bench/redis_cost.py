"""What a profile read costs Redis itself: the service's READ script beside the same reads
sent as one MULTI, on the same keys.

Redis runs on one core and every read of every query process goes through it, so its CPU per
profile bounds `profiles` throughput whatever the service does. Measured from Redis's own
account (INFO cpu: used_cpu_user + used_cpu_sys, so it works on a configured server too) over
`calls` reads of each batch, one synchronous client, nothing else sent meanwhile. The MULTI
sends, per customer, the five commands READ calls (HGETALL, ZREVRANGE, HMGET, ZRANGE,
SMEMBERS) and no Lua: what the script's conversions and string building cost beside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from bench.bare_query import RECENT, Keys
from domain.ids import customer_uuid
from projections.profile_queries import READ


def _cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _per_profile(
    client: redis.Redis, read: Callable[[Sequence[str]], Any], batches: list[list[str]], calls: int
) -> dict[str, float]:
    read(batches[0])  # warm: the script loaded, the keys' pages in memory
    cpu, started = _cpu(client), time.perf_counter()
    for n in range(calls):
        read(batches[n % len(batches)])
    wall = time.perf_counter() - started
    profiles = sum(len(batches[n % len(batches)]) for n in range(calls))
    return {
        "redis_cpu_us_per_profile": (_cpu(client) - cpu) / profiles * 1e6,
        "wall_ms_per_read": wall / calls * 1_000,
    }


def measure(
    redis_url: str, namespace: str, batches: list[list[str]], calls: int
) -> dict[str, dict[str, float]]:
    """{"script": ..., "multi": ...}: Redis CPU per profile and wall time per read of each."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = Keys(namespace)
    script = client.register_script(READ)

    def by_script(ids: Sequence[str]) -> Any:
        return script(keys.script_keys([customer_uuid(c) for c in ids]), [RECENT])

    def by_multi(ids: Sequence[str]) -> Any:
        pipe = client.pipeline(transaction=True)
        names = keys.script_keys([customer_uuid(c) for c in ids])
        pipe.hgetall(names[0])
        pipe.get(names[1])
        for i in range(3, len(names), 5):
            profile, recent, score, pending, members = names[i : i + 5]
            pipe.hgetall(profile)
            pipe.zrevrange(recent, 0, RECENT - 1)
            pipe.hmget(score, "v", "ref")
            pipe.zrange(pending, 0, -1, withscores=True)
            pipe.smembers(members)
        return pipe.execute()

    try:
        return {
            "script": _per_profile(client, by_script, batches, calls),
            "multi": _per_profile(client, by_multi, batches, calls),
        }
    finally:
        client.close()
