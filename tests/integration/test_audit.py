"""The audit side over HTTP: consent at an instant, the profile as of a time or version, export."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.integration.conftest import Service
from tests.integration.queries import GRANT, PROFILE, RECORD_MANY, TRAITS, WITHDRAW

CONSENT_AT = """query($id: ID!, $purpose: ConsentPurpose!, $at: DateTime!) {
  consentAt(customerId: $id, purpose: $purpose, at: $at) {
    purpose granted source policyVersion changedAt eventVersion eventPosition recordedAt } }"""
AS_OF = """query($id: ID!, $at: DateTime, $version: Int) {
  profileAsOf(customerId: $id, at: $at, version: $version) {
    customerId version traits interactionCount erased
    consents { purpose granted source policyVersion changedAt } } }"""
HISTORY = """query($id: ID!) { history(customerId: $id) { events { version type recordedAt } } }"""
EXPORT = "query($id: ID!) { export(customerId: $id) }"
DEFINE = "mutation($input: SegmentInput!) { defineSegment(input: $input) { version position } }"

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def change(service: Service, document: str, at: datetime, policy: str) -> dict[str, Any]:
    consent = {
        "customerId": "c-1",
        "purpose": "EMAIL",
        "source": "preference-centre",
        "policyVersion": policy,
        "occurredAt": iso(at),
    }
    return dict(next(iter(service.command(document, input=consent)["data"].values())))


def consent_at(service: Service, at: datetime) -> dict[str, Any]:
    body = service.audit(CONSENT_AT, id="c-1", purpose="EMAIL", at=iso(at))
    return dict(body["data"]["consentAt"])


def test_consent_at_answers_between_and_on_the_boundaries_with_the_deciding_event(
    service: Service,
) -> None:
    t1, t2, t3 = T0, T0 + timedelta(days=10), T0 + timedelta(days=20)
    granted = change(service, GRANT, t1, "v1")
    withdrawn = change(service, WITHDRAW, t2, "v1")
    regranted = change(service, GRANT, t3, "v2")
    # Recorded last, happened between t1 and t2: it counts from when it happened.
    late = change(service, WITHDRAW, t1 + timedelta(days=5), "v1")

    before = consent_at(service, t1 - timedelta(seconds=1))
    assert (before["granted"], before["changedAt"], before["eventVersion"]) == (False, None, None)
    expected = [
        (t1, True, granted),
        (t1 + timedelta(days=1), True, granted),
        (t1 + timedelta(days=5), False, late),
        (t2 - timedelta(microseconds=1), False, late),
        (t2, False, withdrawn),
        (t3 - timedelta(seconds=1), False, withdrawn),
        (t3, True, regranted),
        (t3 + timedelta(days=400), True, regranted),
    ]
    for at, allowed, event in expected:
        answer = consent_at(service, at)
        assert (answer["granted"], answer["eventVersion"], answer["eventPosition"]) == (
            allowed,
            event["version"],
            event["position"],
        ), at
    assert consent_at(service, t3)["policyVersion"] == "v2"
    assert consent_at(service, t3)["source"] == "preference-centre"


def test_profile_as_of_the_latest_version_equals_the_live_profile(service: Service) -> None:
    service.command(GRANT, input={"customerId": "c-1", "purpose": "PERSONALIZATION", "source": "f"})
    change(service, GRANT, T0, "v3")
    service.command(
        TRAITS, input={"customerId": "c-1", "traits": {"firstName": "Ada", "country": "uk"}}
    )
    inputs = [
        {
            "eventId": f"e-{n}",
            "customerId": "c-1",
            "type": "page_view",
            "occurredAt": iso(datetime.now(UTC) - timedelta(minutes=n)),
        }
        for n in range(3)
    ]
    results = service.command(RECORD_MANY, inputs=inputs)["data"]["recordInteractions"]
    position = max(r["position"] for r in results)
    live = service.query(PROFILE, id="c-1", min=position)["data"]["profile"]
    audited = service.audit(AS_OF, id="c-1")["data"]["profileAsOf"]
    assert audited["version"] == live["version"]
    assert audited["traits"] == live["traits"]
    assert audited["consents"] == live["consents"]
    assert audited["interactionCount"] == sum(live["interactionCounts"].values())
    assert audited["erased"] is False
    # Present-instant agreement of consentAt with the live profile, purpose by purpose.
    for state in live["consents"]:
        now = iso(datetime.now(UTC))
        body = service.audit(CONSENT_AT, id="c-1", purpose=state["purpose"], at=now)
        assert body["data"]["consentAt"]["granted"] == state["granted"]


def test_profile_as_of_a_time_or_version_shows_only_what_was_recorded_by_then(
    service: Service,
) -> None:
    service.command(TRAITS, input={"customerId": "c-1", "traits": {"firstName": "Ada"}})
    service.command(TRAITS, input={"customerId": "c-1", "traits": {"firstName": "Grace"}})
    events = service.audit(HISTORY, id="c-1")["data"]["history"]["events"]
    first_traits = events[1]
    by_version = service.audit(AS_OF, id="c-1", version=2)["data"]["profileAsOf"]
    by_time = service.audit(AS_OF, id="c-1", at=first_traits["recordedAt"])["data"]["profileAsOf"]
    assert by_version["traits"] == by_time["traits"] == {"firstName": "Ada"}
    assert service.audit(AS_OF, id="c-1")["data"]["profileAsOf"]["traits"] == {"firstName": "Grace"}
    long_ago = iso(T0 - timedelta(days=3650))
    assert service.audit(AS_OF, id="c-1", at=long_ago)["data"]["profileAsOf"] is None
    bad = service.audit(AS_OF, id="c-1", version=0)
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_export_holds_every_kind_of_event_and_round_trips_through_json(service: Service) -> None:
    rule = {"event": {"type": "purchase"}}
    service.command(DEFINE, input={"id": "buyers", "name": "Buyers", "rule": rule})
    service.command(GRANT, input={"customerId": "c-1", "purpose": "PERSONALIZATION", "source": "f"})
    change(service, WITHDRAW, T0, "v1")
    service.command(TRAITS, input={"customerId": "c-1", "traits": {"email": "ada@example.org"}})
    inputs = [
        {
            "eventId": f"e-{kind}",
            "customerId": "c-1",
            "type": kind,
            "channel": "web",
            "occurredAt": iso(datetime.now(UTC) - timedelta(minutes=1)),
            "properties": {"productId": "sku-1", "value": 49.9},
        }
        for kind in ("product_view", "purchase")
    ]
    service.command(RECORD_MANY, inputs=inputs)
    document = service.audit(EXPORT, id="c-1")["data"]["export"]
    assert json.loads(json.dumps(document)) == document
    assert document["traits"] == {"email": "ada@example.org"}
    assert {c["purpose"] for c in document["consents"]} == {"PERSONALIZATION", "EMAIL"}
    assert [c["granted"] for c in document["consentHistory"]] == [True, False]
    assert [i["type"] for i in document["interactions"]] == ["product_view", "purchase"]
    assert document["interactions"][1]["properties"] == {"productId": "sku-1", "value": 49.9}
    assert document["engagementScore"] > 0
    assert document["segments"] == ["buyers"]
    assert service.audit(EXPORT, id="nobody")["data"]["export"] is None
