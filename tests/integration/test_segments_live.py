"""Segments over HTTP: join with events, leave with the clock, back-fill, retire."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.settings import Settings
from tests.fakes import FakeClock
from tests.integration.conftest import Service
from tests.integration.queries import GRANT, RECORD_MANY

DEFINE = "mutation($input: SegmentInput!) { defineSegment(input: $input) { version position } }"
RETIRE = "mutation($id: ID!) { retireSegment(id: $id) { version position } }"
PROFILE = "query($id: ID!, $min: Long) { profile(customerId: $id, minPosition: $min) { segments } }"
SEGMENT = """query($id: ID!) { segment(id: $id) {
  id version state size members(first: 2) { customerIds endCursor hasNextPage } } }"""
VIEWS = {"event": {"type": "product_view", "atLeast": 3, "within": "PT10M"}}


def views(service: Service, customer: str, at: list[datetime], start: int = 0) -> int:
    inputs = [
        {
            "eventId": f"{customer}-{start + n}",
            "customerId": customer,
            "type": "product_view",
            "occurredAt": t.isoformat(),
        }
        for n, t in enumerate(at)
    ]
    results = service.command(RECORD_MANY, inputs=inputs)["data"]["recordInteractions"]
    return int(max(r["position"] for r in results))


def consent(service: Service, customer: str) -> None:
    grant = {"customerId": customer, "purpose": "PERSONALIZATION", "source": "form"}
    service.command(GRANT, input=grant)


def segments_of(service: Service, customer: str, position: int = 0) -> list[str]:
    return list(service.query(PROFILE, id=customer, min=position)["data"]["profile"]["segments"])


def eventually(check: Callable[[], Any], seconds: float = 5.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_three_views_join_and_the_clock_alone_makes_them_leave(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    clock = FakeClock(datetime.now(UTC))
    service = start_service(settings, clock=clock)
    defined = service.command(DEFINE, input={"id": "hot", "name": "Hot", "rule": VIEWS})
    consent(service, "c-1")
    position = views(service, "c-1", [clock() - timedelta(minutes=m) for m in (3, 2, 1)])
    assert segments_of(service, "c-1", position) == ["hot"]
    assert defined["data"]["defineSegment"]["version"] == 1
    clock.advance(minutes=7, seconds=1)  # the oldest view is now 10 minutes and 1 s old
    left = time.monotonic()
    assert eventually(lambda: segments_of(service, "c-1") == []), "never left"
    assert time.monotonic() - left < 1.0  # within a second of the instant, with no new event


def test_a_score_threshold_is_left_as_the_score_decays(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    clock = FakeClock(datetime.now(UTC))
    service = start_service(settings, clock=clock)
    rule = {"score": {"op": "gte", "value": 5}}
    service.command(DEFINE, input={"id": "engaged", "name": "Engaged", "rule": rule})
    consent(service, "c-2")
    inputs = [
        {
            "eventId": "p-1",
            "customerId": "c-2",
            "type": "purchase",
            "occurredAt": clock().isoformat(),
        }
    ]
    result = service.command(RECORD_MANY, inputs=inputs)["data"]["recordInteractions"][0]
    assert segments_of(service, "c-2", result["position"]) == ["engaged"]  # 10 >= 5
    clock.advance(days=7, seconds=1)  # one half-life: 5 - a little
    assert eventually(lambda: segments_of(service, "c-2") == []), "never left"


def test_a_new_rule_back_fills_existing_profiles_and_retiring_removes_it(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    clock = FakeClock(datetime.now(UTC))
    service = start_service(settings, clock=clock)
    for customer in ("a", "b", "c"):
        consent(service, customer)
        views(service, customer, [clock() - timedelta(minutes=m) for m in (4, 3, 2)])
    views(service, "d", [clock() - timedelta(minutes=1)])  # only one view: not in
    service.command(DEFINE, input={"id": "hot", "name": "Hot", "rule": VIEWS})

    def filled() -> dict[str, Any] | None:
        segment = service.query(SEGMENT, id="hot")["data"]["segment"]
        return segment if segment and segment["state"] == "live" else None

    segment = eventually(filled)
    assert segment is not None, "the back-fill never finished"
    assert segment["size"] == 3
    assert segment["members"] == {"customerIds": ["a", "b"], "endCursor": "b", "hasNextPage": True}
    assert segments_of(service, "a") == ["hot"]
    retired = service.command(RETIRE, id="hot")["data"]["retireSegment"]
    assert segments_of(service, "a", retired["position"]) == []
    assert service.query(SEGMENT, id="hot")["data"]["segment"] is None
    assert service.query("{ segments { id } }")["data"]["segments"] == []


def test_a_changed_rule_re_evaluates_existing_profiles(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    clock = FakeClock(datetime.now(UTC))
    service = start_service(settings, clock=clock)
    consent(service, "e")
    views(service, "e", [clock() - timedelta(minutes=m) for m in (2, 1)])  # two views
    service.command(DEFINE, input={"id": "hot", "name": "Hot", "rule": VIEWS})  # needs 3
    assert eventually(
        lambda: (service.query(SEGMENT, id="hot")["data"]["segment"] or {}).get("state") == "live"
    )
    assert segments_of(service, "e") == []
    two = {"event": {"type": "product_view", "atLeast": 2, "within": "PT10M"}}
    changed = service.command(DEFINE, input={"id": "hot", "name": "Hot", "rule": two})
    assert changed["data"]["defineSegment"]["version"] == 2

    def joined() -> bool:
        segment = service.query(SEGMENT, id="hot")["data"]["segment"] or {}
        return bool(
            segment.get("version") == 2
            and segment.get("state") == "live"
            and segments_of(service, "e") == ["hot"]
        )

    assert eventually(joined), "the changed rule was not applied to the existing profile"
