"""Invariant 2 under fire: a projector SIGKILLed at random points converges, counting once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import redis

from adapters.settings import Settings
from adapters.store_config import build_application
from domain.application import utc_now
from domain.commands import ChangeConsent, Command, RecordInteraction
from tests.integration.readmodels import dump, rebuild

ROOT = Path(__file__).resolve().parents[2]


def seed(settings: Settings, customers: int, per_customer: int) -> int:
    app = build_application(settings, utc_now)
    now = datetime.now(UTC)
    try:
        units: list[list[Command]] = [
            [
                ChangeConsent.parse(
                    {"customerId": f"c-{c}", "purpose": "PERSONALIZATION", "source": "f"},
                    granted=True,
                    now=now,
                    field="i",
                )
            ]
            for c in range(customers)
        ]
        for i in range(per_customer):
            for c in range(customers):
                raw = {
                    "eventId": f"e-{c}-{i}",
                    "customerId": f"c-{c}",
                    "type": random.choice(["page_view", "purchase"]),
                    "occurredAt": now - timedelta(seconds=random.randrange(100_000)),
                }
                units.append([RecordInteraction.parse(raw, now=now, field="i")])
        for start in range(0, len(units), 500):
            app.execute(units[start : start + 500])
        return app.recorder.max_notification_id() or 0
    finally:
        app.close()


def projector(settings: Settings) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": str(settings.database_url),
        "REDIS_URL": str(settings.redis_url),
        "PROFILES_REDIS_NAMESPACE": settings.redis_namespace,
        "PROFILES_PROJECTION_BATCH": "37",  # small, odd batches: many instants to die in
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "project"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def position(client: redis.Redis, settings: Settings) -> int:
    raw = client.hget(f"{settings.redis_namespace}projection:profile:v1", "position")
    return int(raw or 0)


def test_projector_killed_ten_times_converges_to_the_rebuild(settings: Settings) -> None:
    head = seed(settings, customers=60, per_customer=80)
    client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)
    rng = random.Random(7)
    kills = 0
    while kills < 10:
        before = position(client, settings)
        process = projector(settings)
        deadline = time.monotonic() + 30
        # Kill only once it is applying batches, at a random instant within its stride.
        while position(client, settings) == before and time.monotonic() < deadline:
            time.sleep(0.005)
        assert position(client, settings) > before, "the projector never got going"
        time.sleep(rng.uniform(0, 0.05))
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        assert position(client, settings) < head, "killed too late to prove anything"
    process = projector(settings)
    try:
        deadline = time.monotonic() + 60
        while position(client, settings) < head and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    live = dump(client, settings.redis_namespace)
    rebuilt_ns = f"rebuilt{uuid.uuid4().hex[:8]}:"
    rebuild(settings, rebuilt_ns)
    assert live == dump(client, rebuilt_ns)
    counted = sum(
        int(v)
        for k, h in live.items()
        if k.startswith("profile:") and ":recent" not in k
        for f, v in h.items()
        if f.startswith("n:")
    )
    with psycopg.connect(str(settings.database_url)) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM profiles_events WHERE topic LIKE %s", ("%InteractionRecorded",)
        ).fetchone()
    assert stored is not None and counted == stored[0] == 60 * 80
