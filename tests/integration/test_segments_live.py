"""Segments over HTTP: join with events, leave with the clock, back-fill, retire."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from adapters.settings import Settings
from adapters.telemetry import setup_telemetry
from api.bootstrap import build_projector
from domain.ids import customer_uuid
from projections.runner import Projector
from projections.segment_keys import SegmentKeys, key_text
from projections.segment_state import Definition
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


WINDOW = {"event": {"type": "page_view", "within": "PT6S"}}  # a leave instant 6 s after a view
EVER = {"event": {"type": "page_view"}}


def page_view(service: Service, customer: str, at: datetime) -> int:
    one = {"eventId": f"{customer}-pv", "customerId": customer, "type": "page_view"}
    recorded = service.command(RECORD_MANY, inputs=[{**one, "occurredAt": at.isoformat()}])
    return int(recorded["data"]["recordInteractions"][0]["position"])


@contextmanager
def stepped_projector(
    settings: Settings, clock: FakeClock
) -> Iterator[tuple[Projector, redis.Redis]]:
    """A projector the test steps by hand (its service runs none): no thread, no timing."""
    projector, reader, wakeup = build_projector(settings, setup_telemetry(settings), clock)
    client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        yield projector, client
    finally:
        client.close()
        wakeup.close()
        reader.close()


def test_a_segment_defined_after_one_retired_before_its_leave_instant_fills(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    clock = FakeClock(datetime.now(UTC))
    service = start_service(settings, clock=clock)
    service.command(DEFINE, input={"id": "w", "name": "W", "rule": WINDOW})
    consent(service, "c-1")
    assert segments_of(service, "c-1", page_view(service, "c-1", clock())) == ["w"]
    retired = service.command(RETIRE, id="w")["data"]["retireSegment"]
    assert segments_of(service, "c-1", retired["position"]) == []
    clock.advance(seconds=7)  # c-1's leave instant for the retired `w` has passed
    service.command(DEFINE, input={"id": "v", "name": "V", "rule": EVER})

    def filled() -> dict[str, Any] | None:
        segment = service.query(SEGMENT, id="v")["data"]["segment"]
        return segment if segment and segment["state"] == "live" else None

    segment = eventually(filled, seconds=30)
    assert segment is not None, "the segment defined after the retirement never left filling"
    assert segment["members"]["customerIds"] == ["c-1"]
    assert segments_of(service, "c-1") == ["v"]


def test_a_due_instant_of_a_retired_segment_clears_and_the_projector_goes_idle(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    clock = FakeClock(datetime.now(UTC))
    service = start_service(settings, clock=clock, project=False)
    due = SegmentKeys(settings.redis_namespace).due

    def steps_until_idle() -> int:
        steps = 0
        while projector.maintain() and steps < 100:
            steps += 1
        return steps

    with stepped_projector(settings, clock) as (projector, client):
        service.command(DEFINE, input={"id": "w", "name": "W", "rule": WINDOW})
        consent(service, "c-1")
        page_view(service, "c-1", clock())
        projector.catch_up()
        steps_until_idle()
        leave = client.zrange(due, 0, -1, withscores=True)
        assert [member for member, _ in leave] == [key_text(customer_uuid("c-1"))]
        service.command(RETIRE, id="w")
        projector.catch_up()
        clock.advance(seconds=7)  # the instant the due set holds for c-1 is now past
        assert steps_until_idle() < 100, "the projector stays busy with a profile always due"
        assert client.zcard(due) == 0
        # And a back-fill is reached: a segment defined now fills and goes live.
        service.command(DEFINE, input={"id": "v", "name": "V", "rule": EVER})
        projector.catch_up()
        steps_until_idle()
        definition = Definition.from_json(
            client.hget(SegmentKeys(settings.redis_namespace).definitions, "v")
        )
        assert definition.state == "live"
        assert segments_of(service, "c-1") == ["v"]


def test_time_driven_work_does_not_hold_back_a_back_fill(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    clock = FakeClock(datetime.now(UTC))
    service = start_service(settings, clock=clock, project=False)
    keys = SegmentKeys(settings.redis_namespace)
    with stepped_projector(settings, clock) as (projector, client):
        service.command(DEFINE, input={"id": "w", "name": "W", "rule": WINDOW})
        consent(service, "c-1")
        page_view(service, "c-1", clock())
        projector.catch_up()
        while projector.maintain():
            pass
        clock.advance(seconds=7)  # c-1 is due: it leaves `w`
        service.command(DEFINE, input={"id": "v", "name": "V", "rule": EVER})
        projector.catch_up()
        assert projector.maintain()
        assert client.zcard(keys.due) == 0  # the tick ran
        assert "v@1/" in client.hget(keys.backfill_state, "scopes")  # and so did the back-fill


def test_a_retired_segment_stays_hidden_with_or_without_the_in_service_list(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    clock = FakeClock(datetime.now(UTC))
    service = start_service(settings, clock=clock)
    any_view = {"event": {"type": "product_view"}}
    for segment in ("kept", "gone"):
        service.command(DEFINE, input={"id": segment, "name": segment, "rule": any_view})
    consent(service, "c-9")
    position = views(service, "c-9", [clock() - timedelta(minutes=1)])
    assert segments_of(service, "c-9", position) == ["gone", "kept"]
    retired = service.command(RETIRE, id="gone")["data"]["retireSegment"]
    assert segments_of(service, "c-9", retired["position"]) == ["kept"]
    keys = SegmentKeys(settings.redis_namespace)
    client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)
    assert client.get(keys.in_service) == '["kept"]'
    assert "gone" in client.smembers(keys.of(customer_uuid("c-9")))  # what the filter hides
    # Read models written before the list existed hold only the definitions.
    client.delete(keys.in_service)
    assert segments_of(service, "c-9") == ["kept"]
