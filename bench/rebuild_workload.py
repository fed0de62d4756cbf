"""What the `rebuild` scenario stores: 5 segments, then ~1,000,000 events over 50,000 customers.

Seeding is setup, not the measured figure, so it runs in several processes at once, each
executing units of commands through `ProfileApplication.execute` for its own share of the
customers (no two processes write one aggregate, so none retries on a conflict). Every event
is one the application produced; the rows are never written by hand.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from adapters.settings import Settings
from adapters.store_config import build_application
from bench.segment_workload import CATEGORIES, COUNTRIES, KINDS, TIERS
from domain.application import ProfileApplication, utc_now
from domain.commands import ChangeConsent, Command, RecordInteraction, UpdateTraits
from domain.segment import DefineSegment

CUSTOMERS = 50_000
# As the projection scenario: saves of ~1,500+ events hang in psycopg 3.3.9's pipeline sync.
SEED_UNIT = 500
TRAIT_SHARE = 0.02  # of the commands after the first profile: a trait update
CONSENT_SHARE = 0.01  # ... a consent granted or withdrawn
DAYS = 30.0
RULES = {
    "shoe-browsers": {
        "event": {
            "type": "product_view",
            "where": {"category": "shoes"},
            "atLeast": 3,
            "within": "P7D",
        }
    },
    "cart-abandoners": {
        "all": [
            {"event": {"type": "add_to_cart", "within": "P3D"}},
            {"not": {"event": {"type": "purchase", "within": "P3D"}}},
        ]
    },
    "engaged": {"score": {"op": "gte", "value": 20}},
    "dach-email": {
        "all": [
            {"trait": {"name": "country", "op": "in", "value": ["DE", "AT"]}},
            {"consent": {"purpose": "EMAIL"}},
        ]
    },
    "email-responders": {
        "any": [
            {"event": {"type": "email_click", "atLeast": 2, "within": "P14D"}},
            {"event": {"type": "email_open", "atLeast": 5, "within": "P7D"}},
        ]
    },
}
SEGMENTS = len(RULES)


def define_segments(app: ProfileApplication) -> None:
    for segment_id, rule in RULES.items():
        raw = {"id": segment_id, "name": segment_id, "rule": rule}
        app.define_segment(DefineSegment.parse(raw, field="input"))


class Commands:
    """One process's commands: its customers' traits and consents, then a stream of interactions
    (several types, times spread over `DAYS`, a tenth recorded late) with trait and consent
    changes mixed in."""

    def __init__(self, worker: int, workers: int, label: str) -> None:
        self.rng = random.Random(worker)
        self.customers = [f"r{n:05d}" for n in range(worker, CUSTOMERS, workers)]
        self.label = f"{label}-{worker}"
        self.sequence = 0
        self.kinds = [k for k, _ in KINDS]
        self.weights = [w for _, w in KINDS]

    def profiles(self, now: datetime) -> Iterator[list[Command]]:
        unit: list[Command] = []
        for who in self.customers:
            unit.append(self.traits(who))
            for purpose, share in (("EMAIL", 0.5), ("SMS", 0.25), ("PERSONALIZATION", 0.8)):
                if self.rng.random() < share:
                    unit.append(self.consent(who, purpose, True, now))
            if len(unit) >= SEED_UNIT:
                yield unit
                unit = []
        if unit:
            yield unit

    def traits(self, who: str) -> UpdateTraits:
        traits = {
            "country": self.rng.choice(COUNTRIES),
            "tier": self.rng.choice(TIERS),
            "lifetimeValue": self.rng.randrange(2_000),
        }
        return UpdateTraits.parse({"customerId": who, "traits": traits}, field="input")

    def consent(self, who: str, purpose: str, granted: bool, now: datetime) -> ChangeConsent:
        raw = {"customerId": who, "purpose": purpose, "source": "bench"}
        return ChangeConsent.parse(raw, granted=granted, now=now, field="input")

    def unit(self, now: datetime) -> list[Command]:
        out: list[Command] = []
        for _ in range(SEED_UNIT):
            who = self.rng.choice(self.customers)
            draw = self.rng.random()
            if draw < TRAIT_SHARE:
                out.append(self.traits(who))
            elif draw < TRAIT_SHARE + CONSENT_SHARE:
                purpose = self.rng.choice(("EMAIL", "SMS"))
                out.append(self.consent(who, purpose, self.rng.random() < 0.5, now))
            else:
                out.append(self.interaction(who, now))
        return out

    def interaction(self, who: str, now: datetime) -> RecordInteraction:
        self.sequence += 1
        at = now - timedelta(days=DAYS * self.rng.random())
        if self.rng.random() < 0.1:
            at -= timedelta(hours=self.rng.uniform(1, 72))
        kind = self.rng.choices(self.kinds, self.weights)[0]
        raw = {
            "eventId": f"{self.label}-{self.sequence}",
            "customerId": who,
            "type": kind,
            "occurredAt": at.isoformat(),
            "channel": "email" if kind.startswith("email") else "web",
            "sessionId": f"s{self.rng.randrange(100_000):05d}",
            "properties": {
                "category": self.rng.choice(CATEGORIES),
                "sku": f"SKU-{self.rng.randrange(10_000):05d}",
                "price": 19.99,
            },
        }
        return RecordInteraction.parse(raw, now=now, field="input")


def seed_share(settings: Settings, worker: int, workers: int, events: int, label: str) -> int:
    """Stores about `events` events for this worker's customers; returns how many it stored."""
    app = build_application(settings, utc_now)
    commands = Commands(worker, workers, label)
    try:
        for unit in commands.profiles(datetime.now(UTC)):
            app.execute([unit])
        while app.events_written < events:
            app.execute([commands.unit(datetime.now(UTC))])
        return app.events_written
    finally:
        app.close()


def seed(settings: Settings, events: int, workers: int, label: str) -> tuple[int, float]:
    """Defines the segments, then seeds from `workers` processes; returns (events, seconds)."""
    started = time.perf_counter()
    app = build_application(settings, utc_now)
    try:
        define_segments(app)
    finally:
        app.close()
    share = (events - SEGMENTS) // workers
    # spawn, not fork: the parent holds pools, sockets and threads a fork would copy.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        args = [(settings, w, workers, share, label) for w in range(workers)]
        stored = sum(pool.starmap(seed_share, args))
    return stored + SEGMENTS, time.perf_counter() - started
