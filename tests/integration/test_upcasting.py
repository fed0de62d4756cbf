"""Events stored by the v1 code, read by the v2 code: InteractionRecorded gained `currency`.

The v1 rows go into Postgres as the v1 code wrote them (tests/v1_events.py: the v1 class through
the mappers of that time, into the same recorder), one customer's before encryption existed and
one's sealed. Then the service as it is now records v2 events beside them, and the write path,
the projector, the audit side and a rebuild all have to read both.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import redis
from eventsourcing.persistence import Mapper, StoredEvent

from adapters.data_keys import PostgresDataKeys
from adapters.personal_mapper import SEALED
from adapters.settings import Settings
from adapters.store_config import build_application
from domain.application import utc_now
from domain.customer import Customer
from domain.ids import customer_uuid
from domain.ports import EventIdClaim
from tests.integration.conftest import Service
from tests.integration.queries import GRANT, PROFILE, RECORD_MANY
from tests.integration.readmodels import dump, rebuild
from tests.v1_events import V1_TOPIC, V1PlainMapper, V1SealingMapper, record_v1

HISTORY = """query($id: ID!) { history(customerId: $id, first: 100) {
  events { version type data personalDataErased } } }"""
AS_OF = """query($id: ID!, $version: Int) {
  profileAsOf(customerId: $id, version: $version) { version interactionCount erased } }"""
EXPORT = "query($id: ID!) { export(customerId: $id) }"
ERASE = "mutation($input: EraseInput!) { eraseProfile(input: $input) { version position } }"

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=2)  # when the v1 code recorded its events

# customer -> (how v1 stored it, the v1 interactions' properties)
V1_HISTORY: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "legacy-plain": ("plain", [{"currency": "eur", "value": 10}, {"path": "/home"}]),
    "legacy-sealed": ("sealed", [{"currency": "USD", "note": "v1-secret"}, {"currency": "usd$"}]),
    "legacy-erased": ("sealed", [{"currency": "SEK", "note": "gone"}]),
}


def write_v1(settings: Settings) -> dict[tuple[str, int], bytes]:
    """Stores the v1 history; returns each row's state by (customer, version)."""
    app = build_application(settings, utc_now, cache=False)  # for its recorder and JSON
    keys = PostgresDataKeys(str(settings.database_url))
    writers: dict[str, Mapper[Any]] = {
        "plain": V1PlainMapper(app.mapper.transcoder),
        "sealed": V1SealingMapper(app.mapper.transcoder, keys),
    }
    rows: dict[tuple[str, int], bytes] = {}
    try:
        for customer_id, (how, interactions) in V1_HISTORY.items():
            customer = Customer.register(customer_id, at=OLD)
            for n, properties in enumerate(interactions):
                record_v1(
                    customer,
                    event_id=f"{customer_id}-v1-{n}",
                    type="purchase" if "currency" in properties else "page_view",
                    occurred_at=OLD + timedelta(minutes=n),
                    session_id="s-old",
                    channel="web",
                    properties=properties,
                    at=OLD,
                )
            events = customer.collect_events()
            stored = [writers[how].to_stored_event(e) for e in events]
            claims = [
                EventIdClaim(e.event_id, customer.id, e.originator_version)  # type: ignore[attr-defined]
                for e in events[1:]
            ]
            app.recorder.insert_events(stored, claims=claims)
            rows.update({(customer_id, s.originator_version): s.state for s in stored})
    finally:
        keys.close()
        app.close()
    return rows


def stored_rows(settings: Settings, customer_id: str) -> list[StoredEvent]:
    with psycopg.connect(str(settings.database_url)) as conn:
        found = conn.execute(
            "SELECT originator_version, topic, state FROM profiles_events "
            "WHERE originator_id = %s ORDER BY originator_version",
            (customer_uuid(customer_id),),
        ).fetchall()
    return [StoredEvent(customer_uuid(customer_id), v, t, bytes(s)) for v, t, s in found]


def interaction(customer_id: str, event_id: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "customerId": customer_id,
        "type": "purchase",
        "occurredAt": (NOW - timedelta(minutes=1)).isoformat(),
        "channel": "app",
        "properties": properties,
    }


def history(service: Service, customer_id: str) -> list[dict[str, Any]]:
    events = service.audit(HISTORY, id=customer_id)["data"]["history"]["events"]
    return [e for e in events if e["type"] == "InteractionRecorded"]


def test_v1_events_load_project_and_replay_beside_v2_events(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    written = write_v1(settings)
    # As the v1 code left them: its topic, no class version, no currency; sealed or plain.
    plain, sealed = (
        stored_rows(settings, "legacy-plain")[1],
        stored_rows(settings, "legacy-sealed")[1],
    )
    assert plain.topic == sealed.topic == V1_TOPIC
    assert plain.state.startswith(b"{") and b'"currency":"eur"' in plain.state
    assert b"class_version" not in plain.state and b'"currency":"EUR"' not in plain.state
    assert sealed.state.startswith(SEALED) and b"class_version" not in sealed.state

    service = start_service(settings)
    # The v2 write path loads the v1 history to decide (versions continue after it).
    results = service.command(
        RECORD_MANY,
        inputs=[
            interaction("legacy-plain", "plain-v2", {"currency": "gbp"}),
            interaction("legacy-sealed", "sealed-v2", {"currency": "JPY", "note": "v2-secret"}),
            interaction("legacy-erased", "erased-v2", {"currency": "NOK"}),
            interaction("fresh", "fresh-v2", {"value": 1}),
        ],
    )["data"]["recordInteractions"]
    assert [r["version"] for r in results] == [4, 4, 3, 2]
    erase = {"customerId": "legacy-erased", "reason": "request", "requestedBy": "dpo"}
    service.command(ERASE, input=erase)
    for customer_id in ("legacy-plain", "legacy-sealed"):  # behaviour shows only with consent
        grant = {"customerId": customer_id, "purpose": "PERSONALIZATION", "source": "form"}
        top = service.command(GRANT, input=grant)["data"]["grantConsent"]["position"]

    # The profile read model holds v1 and v2 interactions alike.
    body = service.query(PROFILE, id="legacy-sealed", min=top)
    assert "readYourWrites" not in body.get("extensions", {}), body  # every model is at `top`
    sealed_profile = body["data"]["profile"]
    assert sealed_profile["version"] == 5
    assert sealed_profile["interactionCounts"] == {"purchase": 3}
    assert [i["properties"] for i in sealed_profile["recentInteractions"]] == [
        {"currency": "JPY", "note": "v2-secret"},
        {"currency": "usd$"},
        {"currency": "USD", "note": "v1-secret"},
    ]
    plain_profile = service.query(PROFILE, id="legacy-plain")["data"]["profile"]
    assert plain_profile["interactionCounts"] == {"purchase": 2, "page_view": 1}
    assert [i["sessionId"] for i in plain_profile["recentInteractions"]] == [None, "s-old", "s-old"]
    assert service.query(PROFILE, id="legacy-erased")["data"]["profile"] is None

    # The audit side: every event with its currency, v1 ones upcast on reading.
    currencies = {
        c: [e["data"]["currency"] for e in history(service, c)]
        for c in ("legacy-plain", "legacy-sealed", "legacy-erased", "fresh")
    }
    assert currencies == {
        "legacy-plain": ["EUR", None, "GBP"],
        "legacy-sealed": ["USD", None, "JPY"],
        "legacy-erased": [None, None],  # forgotten: the currency went with the properties
        "fresh": [None],
    }
    assert all(e["personalDataErased"] for e in history(service, "legacy-erased"))
    as_of = service.audit(AS_OF, id="legacy-sealed", version=3)["data"]["profileAsOf"]
    assert (as_of["version"], as_of["interactionCount"]) == (3, 2)
    document = service.audit(EXPORT, id="legacy-sealed")["data"]["export"]
    assert [(i["eventId"], i["currency"]) for i in document["interactions"]] == [
        ("legacy-sealed-v1-0", "USD"),
        ("legacy-sealed-v1-1", None),
        ("sealed-v2", "JPY"),
    ]

    # The library's own repository path (snapshot-free replay) upcasts too.
    app = build_application(settings, utc_now, cache=False)
    try:
        customer: Customer = app.repository.get(customer_uuid("legacy-plain"))
        assert (customer.version, customer.interaction_count) == (5, 3)
    finally:
        app.close()

    # A rebuild from the store equals the live read models.
    client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)
    rebuilt_ns = f"rebuilt{uuid.uuid4().hex[:8]}:"
    rebuild(settings, rebuilt_ns)
    assert dump(client, rebuilt_ns) == dump(client, settings.redis_namespace)

    # Nothing was rewritten: the v1 rows are byte for byte as stored.
    for (customer_id, version), state in written.items():
        assert stored_rows(settings, customer_id)[version - 1].state == state
