"""Erasure by crypto-shredding, end to end over HTTP: what is left in Postgres and Redis."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from adapters.settings import Settings
from tests.integration.conftest import Service, with_settings
from tests.integration.queries import GRANT, PROFILE, RECORD_MANY, TRAITS
from tests.integration.readmodels import dump
from tests.integration.stores_scan import postgres_bytes

ERASE = """mutation($input: EraseInput!) {
  eraseProfile(input: $input) { id version position duplicate }
}"""
DEFINE = "mutation($input: SegmentInput!) { defineSegment(input: $input) { version position } }"
HISTORY = """query($id: ID!) { history(customerId: $id, first: 1000) {
  events { version position type recordedAt occurredAt data personalDataErased } hasNextPage } }"""
SEGMENT = "query($id: ID!) { segment(id: $id) { size members(first: 10) { customerIds } } }"

# Values that exist nowhere else: finding one proves a leak.
GONE = {
    "customer id": "erase-me-7f3q",
    "email": "ada.lovelace.7f3q@example.org",
    "first name": "Adelheid7f3q",
    "last name": "Lovelacewicz7f3q",
    "interaction property": "unique-prop-7f3q",
    "session id": "session-7f3q",
}
KEPT_EMAIL = "keep.me.9k2w@example.org"


def feed(service: Service, customer: str, email: str, first: str, last: str, prop: str) -> int:
    service.command(
        GRANT, input={"customerId": customer, "purpose": "PERSONALIZATION", "source": "form"}
    )
    traits = {"email": email, "firstName": first, "lastName": last}
    service.command(TRAITS, input={"customerId": customer, "traits": traits})
    at = datetime.now(UTC) - timedelta(minutes=1)
    inputs = [
        {
            # Kept in clear (the claim that makes a repeat a no-op): never personal data.
            "eventId": f"{abs(hash(customer)) % 10_000}-view-{n}",
            "customerId": customer,
            "type": "product_view",
            "occurredAt": (at + timedelta(seconds=n)).isoformat(),
            "sessionId": GONE["session id"] if customer == GONE["customer id"] else "s-1",
            "properties": {"note": prop, "category": "shoes"},
        }
        for n in range(12)
    ]
    results = service.command(RECORD_MANY, inputs=inputs)["data"]["recordInteractions"]
    return int(max(r["position"] for r in results))


def everything(service: Service) -> tuple[bytes, str]:
    url = str(service.settings.database_url)
    client = redis.Redis.from_url(str(service.settings.redis_url), decode_responses=True)
    return postgres_bytes(url), repr(dump(client, service.settings.redis_namespace))


def found(postgres: bytes, redis_text: str, value: str) -> list[str]:
    return [
        where
        for where, hit in [("postgres", value.encode() in postgres), ("redis", value in redis_text)]
        if hit
    ]


def test_erasure_leaves_no_personal_value_in_postgres_or_redis_and_keeps_others(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    # Snapshots every 5 events: some are taken before the erasure and must not leak either.
    service = start_service(with_settings(settings, snapshot_interval=5))
    rule = {"event": {"type": "product_view", "where": {"category": "shoes"}}}
    service.command(DEFINE, input={"id": "shoe-fans-5u8", "name": "Shoe fans 5u8", "rule": rule})
    gone = GONE["customer id"]
    feed(
        service,
        gone,
        GONE["email"],
        GONE["first name"],
        GONE["last name"],
        GONE["interaction property"],
    )
    position = feed(service, "keep-me", KEPT_EMAIL, "Kept", "Person", "kept-prop")
    profile = service.query(PROFILE, id=gone, min=position)["data"]["profile"]
    assert profile["traits"]["email"] == GONE["email"]

    postgres, redis_text = everything(service)
    # The scan can see: plain segment definitions in Postgres, plain read models in Redis.
    assert b"Shoe fans 5u8" in postgres
    assert GONE["email"] in redis_text and KEPT_EMAIL in redis_text
    # Encrypted at rest from the start: no personal value in Postgres, for anyone.
    for value in [*GONE.values(), KEPT_EMAIL]:
        assert value.encode() not in postgres, value

    erased = service.command(
        ERASE,
        input={"customerId": gone, "reason": "GDPR art. 17, ticket 42", "requestedBy": "dpo-1"},
    )["data"]["eraseProfile"]
    assert erased["duplicate"] is False
    assert service.query(PROFILE, id=gone, min=erased["position"])["data"]["profile"] is None

    postgres, redis_text = everything(service)
    leaks = {name: found(postgres, redis_text, value) for name, value in GONE.items()}
    assert all(not where for where in leaks.values()), leaks
    assert KEPT_EMAIL in redis_text
    kept = service.query(PROFILE, id="keep-me")["data"]["profile"]
    assert kept["traits"]["email"] == KEPT_EMAIL
    assert service.query(SEGMENT, id="shoe-fans-5u8")["data"]["segment"]["members"][
        "customerIds"
    ] == ["keep-me"]


def test_after_erasure_history_keeps_every_event_with_personal_data_null(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    service = start_service(with_settings(settings, snapshot_interval=5))
    gone = GONE["customer id"]
    feed(service, gone, GONE["email"], "A", "B", "p")
    before = service.audit(HISTORY, id=gone)["data"]["history"]["events"]
    request = {"customerId": gone, "reason": "GDPR art. 17", "requestedBy": "dpo-1"}
    erased = service.command(ERASE, input=request)["data"]["eraseProfile"]

    after = service.audit(HISTORY, id=gone)["data"]["history"]["events"]
    assert [e["version"] for e in after] == [*(e["version"] for e in before), erased["version"]]
    assert [e["position"] for e in after[:-1]] == [e["position"] for e in before]
    by_type = {e["type"]: e for e in after}
    assert by_type["Registered"]["data"]["customerId"] is None
    assert by_type["TraitsUpdated"]["data"]["traits"] is None
    views = [e for e in after if e["type"] == "InteractionRecorded"]
    assert all(v["data"]["properties"] is None and v["personalDataErased"] for v in views)
    # What is not personal stays readable: when, what type, which eventId.
    assert views[0]["data"]["eventId"] == f"{abs(hash(gone)) % 10_000}-view-0"
    assert views[0]["occurredAt"] == before[3]["occurredAt"]
    last = after[-1]
    assert last["type"] == "ProfileErased" and last["personalDataErased"] is False
    assert last["data"] == {"reason": "GDPR art. 17", "requestedBy": "dpo-1"}


def test_commands_for_an_erased_customer_fail_with_erased_and_erasing_again_is_a_no_op(
    service: Service,
) -> None:
    feed(service, "gone-2", "x@example.org", "A", "B", "p")
    request = {"customerId": "gone-2", "reason": "request", "requestedBy": "dpo-1"}
    first = service.command(ERASE, input=request)["data"]["eraseProfile"]
    again = service.command(ERASE, input=request)["data"]["eraseProfile"]
    assert again["duplicate"] is True and again["version"] == first["version"]
    refused: list[dict[str, Any]] = [
        service.command(TRAITS, input={"customerId": "gone-2", "traits": {"firstName": "Z"}}),
        service.command(
            GRANT, input={"customerId": "gone-2", "purpose": "EMAIL", "source": "form"}
        ),
        service.command(
            RECORD_MANY,
            inputs=[
                {
                    "eventId": "new-1",
                    "customerId": "gone-2",
                    "type": "page_view",
                    "occurredAt": datetime.now(UTC).isoformat(),
                }
            ],
        ),
    ]
    assert [r["errors"][0]["extensions"]["code"] for r in refused] == ["ERASED"] * 3
    unknown = service.command(
        ERASE, input={"customerId": "never-seen", "reason": "r", "requestedBy": "dpo-1"}
    )
    assert unknown["errors"][0]["extensions"]["code"] == "NOT_FOUND"
