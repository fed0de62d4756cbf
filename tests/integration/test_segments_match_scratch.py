"""Live segment membership equals a from-scratch evaluation of the full history at the same
instant, over random events, arrival orders and clock moves."""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import redis

from adapters.settings import Settings
from adapters.store_config import build_application
from adapters.telemetry import setup_telemetry
from api.bootstrap import build_projector
from domain.commands import ChangeConsent, Command, RecordInteraction
from domain.evaluation import evaluate
from domain.facts import Facts, KeyTimes, event_conditions, matches
from domain.ids import customer_uuid
from domain.rules import parse_rule
from domain.score import ScoreModel, ScoreState
from domain.segment import DefineSegment
from projections.segments import SegmentKeys
from tests.fakes import FakeClock

RULES = {
    "views": {"event": {"type": "product_view", "atLeast": 2, "within": "PT30M"}},
    "shoes": {"event": {"type": "product_view", "where": {"category": "shoes"}, "atLeast": 1}},
    "no-buy": {
        "all": [
            {"not": {"event": {"type": "purchase", "within": "PT1H"}}},
            {"score": {"op": "gte", "value": 3}},
        ]
    },
    "either": {
        "any": [{"event": {"type": "purchase", "atLeast": 2}}, {"consent": {"purpose": "EMAIL"}}]
    },
}


def scratch(
    rule_json: object,
    events: list[tuple[str, dict[str, str], datetime]],
    emails: bool,
    t: datetime,
    model: ScoreModel,
) -> bool:
    rule = parse_rule(rule_json)
    times: dict[str, list[datetime]] = {}
    for condition in event_conditions(rule):
        times[condition.key] = sorted(
            at for kind, props, at in events if matches(condition, kind, props)
        )
    score = ScoreState()
    for kind, _, at in events:
        score = score.add(model, kind, at, t)
    facts = Facts(
        events={k: KeyTimes(tuple(v), len(v)) for k, v in times.items()},
        consents={"EMAIL": emails},
        score=score,
    )
    return evaluate(rule, facts, model, t)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_live_membership_equals_scratch_evaluation(settings: Settings, seed: int) -> None:
    rng = random.Random(seed)
    clock = FakeClock(datetime.now(UTC))
    settings = replace(settings, redis_namespace=f"m{uuid.uuid4().hex[:8]}:")
    app = build_application(settings, clock)
    model = settings.score_model
    for segment_id, rule in RULES.items():
        app.define_segment(
            DefineSegment.parse({"id": segment_id, "name": segment_id, "rule": rule}, field="i")
        )
    projector, reader, wakeup = build_projector(settings, setup_telemetry(settings), clock)
    history: dict[str, list[tuple[str, dict[str, str], datetime]]] = {}
    emails: dict[str, bool] = {}
    try:
        for step in range(6):
            units: list[list[Command]] = []
            for n in range(30):
                customer = f"c-{rng.randrange(8)}"
                if rng.random() < 0.1:
                    granted = rng.random() < 0.5
                    emails[customer] = granted
                    raw = {"customerId": customer, "purpose": "EMAIL", "source": "f"}
                    units.append(
                        [ChangeConsent.parse(raw, granted=granted, now=clock(), field="i")]
                    )
                    continue
                kind = rng.choice(["product_view", "purchase", "page_view"])
                props = {"category": rng.choice(["shoes", "bags"])}
                at = clock() - timedelta(minutes=rng.randrange(0, 120))  # late, out of order
                history.setdefault(customer, []).append((kind, props, at))
                raw2 = {
                    "eventId": f"{seed}-{step}-{n}",
                    "customerId": customer,
                    "type": kind,
                    "occurredAt": at,
                    "properties": props,
                }
                units.append([RecordInteraction.parse(raw2, now=clock(), field="i")])
            app.execute(units)
            projector.catch_up()
            while projector.maintain():
                pass
            clock.advance(minutes=rng.randrange(1, 40))  # time moves membership too
            while projector.maintain():
                pass
            client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)
            keys = SegmentKeys(settings.redis_namespace)
            for customer, events in history.items():
                live = client.smembers(keys.of(customer_uuid(customer)))
                expected = {
                    s
                    for s, rule in RULES.items()
                    if scratch(rule, events, emails.get(customer, False), clock(), model)
                }
                assert live == expected, (customer, step, sorted(live), sorted(expected))
    finally:
        wakeup.close()
        reader.close()
        app.close()
