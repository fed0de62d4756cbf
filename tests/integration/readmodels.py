"""Helpers to compare read models: everything under a Redis namespace, as plain values."""

from __future__ import annotations

import json
import re
from typing import Any

import redis

from adapters.settings import Settings
from adapters.telemetry import setup_telemetry
from api.bootstrap import build_projector
from domain.application import utc_now
from domain.ports import Clock


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


def by_version(dumped: dict[str, Any], *, schedule: bool = True) -> dict[str, Any]:
    """The dump with version numbers taken out of key names, and without the version pointer:
    version 2 of a read model compares equal to version 1 of a clean build. The back-fill's
    bookkeeping is left out too: a rebuild's stream pass needs no back-fill, so has none.

    Without `schedule`, segment due instants are left out (which profiles are due stays).
    They are hints that may come early: a score that rose past no threshold keeps the instant
    it had, and the profile is then rechecked and rescheduled. Where pages split the history
    differently (a rebuild, then live pages) they can differ while membership is the same. For
    the same reason a profile whose facts schedule nothing is not counted as due: its entry is
    a hint left by a segment retired since (it is rechecked once at that instant and dropped)."""
    out: dict[str, Any] = {}
    for name, value in dumped.items():
        if name == "readmodels":
            continue
        name = VERSION.sub(r"\1v*", name)
        if name == "segments:v*:backfill":
            continue
        if not schedule and name.startswith("segments:v*:facts:"):
            value = {k: v for k, v in json.loads(value).items() if k != "d"}
        elif not schedule and name == "segments:v*:due":
            value = [member for member, _ in value]
        out[name] = value
    if not schedule and "segments:v*:due" in out:
        out["segments:v*:due"] = sorted(m for m in out["segments:v*:due"] if _schedules(dumped, m))
    return out


def _schedules(dumped: dict[str, Any], stream: str) -> bool:
    """Whether the profile's stored facts name any instant its segments may change."""
    facts = next((v for k, v in dumped.items() if k.endswith(f":facts:{{{stream}}}")), None)
    return facts is not None and any(v is not None for v in json.loads(facts).get("d", {}).values())


VERSION = re.compile(r"(^|:)v\d+(?=:|$)")


def rebuild(settings: Settings, namespace: str, clock: Clock = utc_now) -> int:
    """Projects the whole store from position 0 into `namespace`; returns events applied."""
    from dataclasses import replace

    fresh = replace(settings, redis_namespace=namespace)
    projector, reader, wakeup = build_projector(fresh, setup_telemetry(fresh), clock)
    try:
        applied = projector.catch_up()
        while projector.maintain():  # back-fills and due times, as the live projector does
            pass
        return applied
    finally:
        wakeup.close()
        reader.close()
