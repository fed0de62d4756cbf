"""The engagement score read model: the contract's formula, decaying without writes,
indifferent to arrival order, blank without PERSONALIZATION."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from adapters.settings import Settings
from domain.score import ScoreModel
from tests.fakes import FakeClock
from tests.integration.conftest import Service
from tests.integration.queries import GRANT, RECORD_MANY

SCORE = """query($id: ID!, $min: Long) {
  profile(customerId: $id, minPosition: $min) { engagementScore canPersonalize }
}"""
TYPES = ["page_view", "product_view", "add_to_cart", "purchase", "email_click", "quiz_taken"]


def record(service: Service, customer: str, events: list[tuple[str, datetime]], start: int) -> int:
    inputs = [
        {
            "eventId": f"{customer}-{start + n}",
            "customerId": customer,
            "type": kind,
            "occurredAt": at.isoformat(),
        }
        for n, (kind, at) in enumerate(events)
    ]
    results = service.command(RECORD_MANY, inputs=inputs)["data"]["recordInteractions"]
    return int(max(r["position"] for r in results))


def score(service: Service, customer: str, position: int) -> float:
    profile = service.query(SCORE, id=customer, min=position)["data"]["profile"]
    return float(profile["engagementScore"])


def test_score_follows_the_formula_and_decays_without_writes(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    clock = FakeClock(datetime.now(UTC))
    service = start_service(settings, clock=clock)
    consent = {"customerId": "c-1", "purpose": "PERSONALIZATION", "source": "form"}
    service.command(GRANT, input=consent)
    rng = random.Random(3)
    events = [
        (rng.choice(TYPES), clock() - timedelta(minutes=rng.randrange(60 * 24 * 40)))
        for _ in range(60)
    ]
    rng.shuffle(events)  # arrival order is not event order
    position = 0
    for chunk in range(0, 60, 15):
        position = record(service, "c-1", events[chunk : chunk + 15], chunk)
    model = ScoreModel()
    expected = model.score_at(events, clock())
    assert math.isclose(score(service, "c-1", position), expected, rel_tol=1e-9)
    clock.advance(days=7)  # a half-life later, nothing written
    assert math.isclose(score(service, "c-1", position), expected / 2, rel_tol=1e-9)


def test_an_interaction_ahead_of_the_clock_counts_from_when_it_happens(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    clock = FakeClock(datetime.now(UTC))
    service = start_service(settings, clock=clock)
    service.command(GRANT, input={"customerId": "c-2", "purpose": "PERSONALIZATION", "source": "f"})
    ahead = clock() + timedelta(minutes=4)
    position = record(service, "c-2", [("purchase", ahead)], 0)
    assert score(service, "c-2", position) == 0
    clock.advance(minutes=4)
    assert math.isclose(score(service, "c-2", position), 10, rel_tol=1e-9)
    later = record(service, "c-2", [("page_view", clock())], 1)  # folds the due one in
    assert math.isclose(score(service, "c-2", later), 11, rel_tol=1e-9)


def test_score_is_blank_without_personalization(service: Service) -> None:
    position = record(service, "c-3", [("purchase", datetime.now(UTC))], 0)
    profile = service.query(SCORE, id="c-3", min=position)["data"]["profile"]
    assert profile == {"engagementScore": 0.0, "canPersonalize": False}
