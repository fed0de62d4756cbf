"""What the `segments` scenario writes: 50 segment rules and customers that can match them.

The rules mix every kind of condition of the contract's SEGMENT RULES (event conditions with
type / where / atLeast / within, score thresholds, traits, consent, all / any / not). The
interactions carry a `category` so that the `where` conditions match some of them, and their
occurredAt is spread over weeks, a few recorded late (out of order), so windows matter.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.commands import ChangeConsent, Command, RecordInteraction, UpdateTraits
from domain.segment import DefineSegment

KINDS = (
    ("page_view", 30),
    ("product_view", 30),
    ("add_to_cart", 10),
    ("checkout_started", 4),
    ("purchase", 3),
    ("email_open", 15),
    ("email_click", 8),
)
CATEGORIES = ("shoes", "bags", "dresses", "watches", "toys", "books")
COUNTRIES = ("DE", "AT", "FR", "BE", "NL", "US")
TIERS = ("bronze", "silver", "gold", "platinum")
SEGMENTS = 50


def _event(kind: str | None, category: str | None = None, **more: Any) -> dict[str, Any]:
    body: dict[str, Any] = dict(more)
    if kind is not None:
        body["type"] = kind
    if category is not None:
        body["where"] = {"category": category}
    return {"event": body}


def _trait(name: str, op: str, value: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "op": op}
    if op != "exists":
        body["value"] = value
    return {"trait": body}


def _rules() -> list[tuple[str, dict[str, Any]]]:
    """(name, rule) for the 50 segments."""
    out: list[tuple[str, dict[str, Any]]] = []
    for c in CATEGORIES:  # 6 x 4 = 24 per-category audiences
        out.append((f"{c} browsers", _event("product_view", c, atLeast=3, within="P7D")))
        abandoned = [_event("add_to_cart", c, within="P3D")]
        abandoned.append({"not": _event("purchase", c, within="P3D")})
        out.append((f"{c} cart abandoners", {"all": abandoned}))
        out.append((f"{c} repeat buyers", _event("purchase", c, atLeast=2)))
        targeted = [_trait("country", "in", ["DE", "AT"]), {"consent": {"purpose": "EMAIL"}}]
        targeted += [_event("product_view", c, atLeast=5, within="P30D")]
        targeted.append({"not": _event("purchase", c, within="P30D")})
        out.append((f"{c} DACH email prospects", {"all": targeted}))
    for op, value in (("gte", 5), ("gte", 10), ("gte", 20), ("gte", 40), ("gte", 80), ("lt", 1)):
        out.append((f"score {op} {value}", {"score": {"op": op, "value": value}}))
    out += [
        ("germany", _trait("country", "eq", "DE")),
        ("benelux and france", _trait("country", "in", ["FR", "BE", "NL"])),
        ("high value", _trait("lifetimeValue", "gte", 1_000)),
        ("tiered outside DE", {"all": [_trait("tier", "exists"), _trait("country", "neq", "DE")]}),
        ("email reachable", {"consent": {"purpose": "EMAIL"}}),
        ("sms reachable", {"consent": {"purpose": "SMS"}}),
        ("email engaged", {"all": [{"consent": {"purpose": "EMAIL"}}, {"score": _gte(10)}]}),
        (
            "email responders",
            {
                "any": [
                    _event("email_click", atLeast=2, within="P14D"),
                    _event("email_open", atLeast=5, within="P7D"),
                ]
            },
        ),
        ("busy today", _event(None, atLeast=10, within="P1D")),
        ("busy this month", _event(None, atLeast=50, within="P30D")),
        ("page readers", _event("page_view", atLeast=20, within="P7D")),
        (
            "abandoned checkout",
            {"all": [_event("checkout_started", within="P1D"), {"not": _event("purchase")}]},
        ),
        ("lapsed buyers", {"all": [_event("purchase"), {"not": _event(None, within="P14D")}]}),
        (
            "vip",
            {"all": [{"score": _gte(30)}, _trait("tier", "in", ["gold", "platinum"])]},
        ),
        (
            "cross-category shoppers",
            {"all": [_event("add_to_cart", c, within="P30D") for c in CATEGORIES[:3]]},
        ),
        (
            "anyone active but not emailable",
            {"all": [_event(None, within="P7D"), {"not": {"consent": {"purpose": "EMAIL"}}}]},
        ),
        ("first-time buyers", {"all": [_event("purchase"), _not(_event("purchase", atLeast=2))]}),
        ("non-buyers", {"all": [_event("product_view", atLeast=10), _not(_event("purchase"))]}),
        ("checkout starters", _event("checkout_started", atLeast=2, within="P30D")),
        ("clickers of toys mail", _event("email_click", "toys", within="P30D")),
    ]
    assert len(out) == SEGMENTS, len(out)
    return out


def _not(rule: dict[str, Any]) -> dict[str, Any]:
    return {"not": rule}


def _gte(value: float) -> dict[str, Any]:
    return {"op": "gte", "value": value}


def segment_commands() -> list[DefineSegment]:
    """The 50 definitions, seg-00..seg-49, validated as the API would."""
    return [
        DefineSegment.parse({"id": f"seg-{i:02d}", "name": name, "rule": rule}, field="input")
        for i, (name, rule) in enumerate(_rules())
    ]


def customer_id(n: int) -> str:
    return f"s{n:05d}"


class SegmentWorkload:
    """Commands from a seeded generator: the same seed gives the same commands (bar times)."""

    def __init__(self, *, seed: int, label: str, days: float = 30.0, late: float = 0.1) -> None:
        self.rng = random.Random(seed)
        self.label = label
        self.days = days
        self.late = late  # share of interactions recorded up to 3 days after they happened
        self.sequence = 0
        self._kinds = [k for k, _ in KINDS]
        self._weights = [w for _, w in KINDS]

    def profile_units(self, customers: int, size: int) -> Iterator[list[Command]]:
        """Traits for every customer, EMAIL consent for half, SMS for a quarter."""
        now = datetime.now(UTC)
        unit: list[Command] = []
        for n in range(customers):
            who = customer_id(n)
            traits = {
                "country": self.rng.choice(COUNTRIES),
                "tier": self.rng.choice(TIERS),
                "lifetimeValue": self.rng.randrange(2_000),
            }
            unit.append(UpdateTraits.parse({"customerId": who, "traits": traits}, field="input"))
            for purpose, share in (("EMAIL", 0.5), ("SMS", 0.25)):
                if self.rng.random() < share:
                    raw = {"customerId": who, "purpose": purpose, "source": "bench"}
                    unit.append(ChangeConsent.parse(raw, granted=True, now=now, field="input"))
            if len(unit) >= size:
                yield unit
                unit = []
        if unit:
            yield unit

    def interactions(
        self, size: int, *, pool: int = 1, customer: str | None = None, progress: float = -1.0
    ) -> list[Command]:
        """`size` interactions of random customers of `pool` (or all for `customer`).

        occurredAt is random over the last `days` days, or with `progress` in 0..1 near that
        point of the span (a history recorded in order), `late` of them some hours to 3 days
        earlier.
        """
        now = datetime.now(UTC)
        span = timedelta(days=self.days)
        out: list[Command] = []
        for _ in range(size):
            self.sequence += 1
            who = customer or customer_id(self.rng.randrange(pool))
            share = self.rng.random() if progress < 0 else progress
            at = now - span * (1.0 - share) - timedelta(seconds=self.rng.uniform(0, 600))
            if self.rng.random() < self.late:
                at -= timedelta(hours=self.rng.uniform(1, 72))
            kind = self.rng.choices(self._kinds, self._weights)[0]
            category = self.rng.choice(CATEGORIES)
            sku = self.rng.randrange(10_000)
            raw = {
                "eventId": f"{self.label}-{self.sequence}",
                "customerId": who,
                "type": kind,
                "occurredAt": at.isoformat(),
                "channel": "email" if kind.startswith("email") else "web",
                "properties": {"category": category, "sku": f"SKU-{sku:05d}", "price": 19.99},
            }
            out.append(RecordInteraction.parse(raw, now=now, field="input"))
        return out
