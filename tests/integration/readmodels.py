"""Helpers to compare read models: everything under a Redis namespace, as plain values."""

from __future__ import annotations

from typing import Any

import redis

from adapters.settings import Settings
from adapters.telemetry import setup_telemetry
from api.bootstrap import build_projector


def dump(client: redis.Redis, namespace: str) -> dict[str, Any]:
    """Every key under the namespace (prefix removed) with its value; tracking keeps position."""
    out: dict[str, Any] = {}
    for key in client.scan_iter(match=f"{namespace}*", count=1_000):
        name = key[len(namespace) :]
        kind = client.type(key)
        if name.endswith(":changes"):
            continue  # a log of when membership changed, not state: a rebuild writes its own
        if name.startswith("projection:"):
            out[name] = {"position": client.hget(key, "position")}
        elif kind == "hash":
            out[name] = client.hgetall(key)
        elif kind == "zset":
            out[name] = client.zrange(key, 0, -1, withscores=True)
        elif kind == "string":
            out[name] = client.get(key)
        elif kind == "set":
            out[name] = sorted(client.smembers(key))
        else:
            out[name] = (kind, client.dump(key))
    return out


def rebuild(settings: Settings, namespace: str) -> int:
    """Projects the whole store from position 0 into `namespace`; returns events applied."""
    from dataclasses import replace

    fresh = replace(settings, redis_namespace=namespace)
    projector, reader, wakeup = build_projector(fresh, setup_telemetry(fresh))
    try:
        return projector.catch_up()
    finally:
        wakeup.close()
        reader.close()
