"""`profiles relay` against a real broker: store order and content per customer, erasure as a
tombstone with no personal data after it, segment changes."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from adapters.kafka_io import Publisher, client_config
from adapters.kafka_relay import EventRelay
from adapters.segment_relay import SegmentChangeRelay
from adapters.settings import Settings
from adapters.store_config import build_application
from domain.application import ProfileApplication, utc_now
from domain.commands import ChangeConsent, EraseProfile, RecordInteraction, UpdateTraits
from domain.event_json import event_data
from domain.ids import customer_uuid
from domain.segment import DefineSegment
from projections.segments import SegmentKeys
from tests.integration.conftest import Service
from tests.integration.kafka_support import PATIENCE, interaction, kafka_settings, read_topic
from tests.integration.test_segments_live import VIEWS, consent, segments_of, views


def relay_all(app: ProfileApplication, settings: Settings, topic: str, page: int = 7) -> None:
    relay = EventRelay(app, Publisher(client_config(settings), "test-relay"), topic, page=page)
    while relay.step():
        pass
    relay.publisher.close()


def by_key(settings: Settings, topic: str) -> dict[str, list[dict[str, Any] | None]]:
    out: dict[str, list[dict[str, Any] | None]] = {}
    for m in read_topic(settings, topic):
        value = m.value()
        out.setdefault((m.key() or b"").decode(), []).append(orjson.loads(value) if value else None)
    return out


def seed(app: ProfileApplication, customers: list[str]) -> None:
    now = utc_now()
    units: list[list[Any]] = []
    for n in range(60):
        who = customers[n % len(customers)]
        raw = interaction(f"{who}-{n}", who, properties={"sku": f"sku-{n}"}, sessionId="s1")
        units.append([RecordInteraction.parse(raw, now=now, field="i")])
        if n % 4 < 2:  # every customer, whatever their number
            traits = {"email": f"{who}@example.com", "loyaltyTier": f"t{n}"}
            units.append([UpdateTraits.parse({"customerId": who, "traits": traits}, field="t")])
        if n % 6 == 0:
            grant = {"customerId": who, "purpose": "EMAIL", "source": f"form-{n}"}
            units.append([ChangeConsent.parse(grant, granted=n % 12 == 0, now=now, field="c")])
    app.execute(units[:70])
    rule = {"id": "hot", "name": "Hot", "rule": VIEWS}
    app.define_segment(DefineSegment.parse(rule, field="s"))
    app.execute(units[70:])


def test_the_relay_publishes_each_customers_events_in_store_order_with_their_content(
    settings: Settings, kafka_bootstrap: str
) -> None:
    settings = kafka_settings(settings, kafka_bootstrap)
    app = build_application(settings, utc_now, cache=False)
    customers = [f"cust-{n}" for n in range(5)]
    try:
        seed(app, customers)
        topic = settings.kafka.events_topic
        relay_all(app, settings, topic)
        relay_all(app, settings, topic)  # a restart resumes from its cursor: nothing again
        published = by_key(settings, topic)
        assert len(published) == len(customers) + 1  # and the segment's stream
        for who in customers:
            uid = customer_uuid(who)
            stored = app.recorder.select_stream(uid, limit=10_000)  # type: ignore[attr-defined]
            expected = [
                {
                    "position": position,
                    "streamId": str(uid),
                    "customerId": who,
                    "version": s.originator_version,
                    "type": type(event := app.mapper.to_domain_event(s)).__name__,
                    "data": event_data(event),
                }
                for position, s in stored
            ]
            records = published[str(uid)]
            assert [{k: r[k] for k in expected[0]} for r in records if r] == expected
            assert all(r is not None and r["stream"] == "customer" for r in records)
    finally:
        app.close()


def test_after_an_erasure_the_topic_holds_a_tombstone_and_no_later_personal_data(
    settings: Settings, kafka_bootstrap: str
) -> None:
    settings = kafka_settings(settings, kafka_bootstrap)
    app = build_application(settings, utc_now, cache=False)
    try:
        seed(app, ["ada", "bob"])
        topic = settings.kafka.events_topic
        relay_all(app, settings, topic)
        app.erase_profile(EraseProfile("ada", "right to erasure", "dpo"))
        now = utc_now()
        later = RecordInteraction.parse(interaction("bob-late", "bob"), now=now, field="i")
        app.record_interaction(later)
        relay_all(app, settings, topic)
        # A relay starting from the beginning after the erasure (a new topic, a rebuilt one).
        replay_topic = f"{topic}-replay"
        relay_all(app, settings, replay_topic)
    finally:
        app.close()
    ada = str(customer_uuid("ada"))
    live = by_key(settings, topic)[ada]
    assert live[-1] is None, "the erasure must end the customer's key with a tombstone"
    erased = live[-2]
    assert erased is not None and erased["type"] == "ProfileErased"
    assert erased["customerId"] is None
    bob = by_key(settings, topic)[str(customer_uuid("bob"))][-1]
    assert bob is not None and bob["data"]["eventId"] == "bob-late"
    replayed = read_topic(settings, replay_topic)
    ada_records = [m for m in replayed if m.key() == ada.encode()]
    assert ada_records and ada_records[-1].value() is None
    for m in ada_records:
        text = m.value() or b""
        for personal in (b'"ada"', b"ada@example.com", b"sku-", b'"s1"'):
            assert personal not in text, f"{personal!r} published after the erasure: {text!r}"
    assert all(orjson.loads(v)["customerId"] is None for m in ada_records if (v := m.value()))
    assert any(b"bob@example.com" in (m.value() or b"") for m in replayed)  # others intact


def test_a_profile_entering_a_segment_is_published_and_its_erasure_is_a_tombstone(
    settings: Settings, kafka_bootstrap: str, start_service: Callable[..., Service]
) -> None:
    settings = kafka_settings(settings, kafka_bootstrap)
    service = start_service(settings)
    service.command(
        "mutation($i: SegmentInput!) { defineSegment(input: $i) { version } }",
        i={"id": "hot", "name": "Hot", "rule": VIEWS},
    )
    consent(service, "seg-1")
    now = datetime.now(UTC)
    position = views(service, "seg-1", [now - timedelta(minutes=m) for m in (3, 2, 1)])
    assert segments_of(service, "seg-1", position) == ["hot"]
    app = build_application(settings, utc_now, cache=False)
    stream = SegmentKeys(settings.redis_namespace).changes
    relay = SegmentChangeRelay.build(settings, stream, app, telemetry=None)
    try:
        assert relay.step() == 1
        service.command(
            "mutation($i: EraseInput!) { eraseProfile(input: $i) { position } }",
            i={"customerId": "seg-1", "reason": "asked", "requestedBy": "dpo"},
        )
        deadline = time.monotonic() + PATIENCE
        while not relay.step():
            assert time.monotonic() < deadline, "the erasure never reached the change log"
            time.sleep(0.05)
    finally:
        relay.close()
        app.close()
    key = f"hot:{customer_uuid('seg-1')}".encode()
    records = read_topic(settings, settings.kafka.segment_changes_topic)
    assert [m.key() for m in records] == [key, key]
    joined = orjson.loads(records[0].value() or b"null")
    assert joined["customerId"] == "seg-1" and joined["member"] is True
    assert records[1].value() is None
