"""The command and query sides over real HTTP, against real Postgres and Redis."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.settings import Settings
from tests.integration.conftest import Service, with_settings
from tests.integration.queries import GRANT, PROFILE, RECORD, RECORD_MANY, TRAITS, WITHDRAW


def now_iso(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def interaction(event_id: str, customer: str = "c-1", **extra: Any) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "customerId": customer,
        "type": "product_view",
        "occurredAt": now_iso(minutes=-1),
        "properties": {"productId": "sku-1", "category": "shoes"},
        **extra,
    }


def code(body: dict[str, Any]) -> str:
    return str(body["errors"][0]["extensions"]["code"])


def test_recorded_interaction_is_readable_with_min_position(service: Service) -> None:
    service.command(
        GRANT, input={"customerId": "c-1", "purpose": "PERSONALIZATION", "source": "form"}
    )
    written = service.command(RECORD, input=interaction("e-1"))["data"]["recordInteraction"]
    profile = service.query(PROFILE, id="c-1", min=written["position"])["data"]["profile"]
    assert profile["version"] == written["version"]
    assert profile["interactionCounts"] == {"product_view": 1}
    assert [i["eventId"] for i in profile["recentInteractions"]] == ["e-1"]


def test_same_event_id_twice_is_a_duplicate_with_the_original_position(service: Service) -> None:
    first = service.command(RECORD, input=interaction("e-1"))["data"]["recordInteraction"]
    again = service.command(RECORD, input=interaction("e-1"))["data"]["recordInteraction"]
    assert again["duplicate"] is True
    assert (again["position"], again["version"]) == (first["position"], first["version"])


def test_batch_records_each_input_with_its_own_result(service: Service) -> None:
    inputs = [interaction("e-1"), interaction("e-2", customer="c-2"), interaction("e-1")]
    results = service.command(RECORD_MANY, inputs=inputs)["data"]["recordInteractions"]
    assert [r["id"] for r in results] == ["c-1", "c-2", "c-1"]
    assert [r["duplicate"] for r in results] == [False, False, True]
    assert results[2]["position"] == results[0]["position"]


def test_traits_are_normalised_and_always_returned(service: Service) -> None:
    raw = {"email": "  Ada@Example.COM ", "gender": "F", "country": "uk", "firstName": " Ada "}
    done = service.command(TRAITS, input={"customerId": "c-1", "traits": raw})["data"]
    profile = service.query(PROFILE, id="c-1", min=done["updateTraits"]["position"])["data"]
    assert profile["profile"]["traits"] == {
        "email": "ada@example.com",
        "gender": "female",
        "country": "GB",
        "firstName": "Ada",
    }


def test_behaviour_is_blank_without_personalization_consent(service: Service) -> None:
    written = service.command(RECORD, input=interaction("e-1"))["data"]["recordInteraction"]
    profile = service.query(PROFILE, id="c-1", min=written["position"])["data"]["profile"]
    assert profile["canPersonalize"] is False
    assert profile["interactionCounts"] == {}
    assert profile["recentInteractions"] == []
    assert profile["firstSeenAt"] is None and profile["lastSeenAt"] is None


def test_withdrawn_personalization_blanks_behaviour_again(service: Service) -> None:
    consent = {"customerId": "c-1", "purpose": "PERSONALIZATION", "source": "preference-center"}
    service.command(GRANT, input=consent)
    service.command(RECORD, input=interaction("e-1"))
    done = service.command(WITHDRAW, input=consent)["data"]["withdrawConsent"]
    profile = service.query(PROFILE, id="c-1", min=done["position"])["data"]["profile"]
    assert profile["canPersonalize"] is False and profile["interactionCounts"] == {}
    assert [(c["purpose"], c["granted"]) for c in profile["consents"]] == [
        ("PERSONALIZATION", False)
    ]


def test_unknown_customer_reads_as_null(service: Service) -> None:
    assert service.query(PROFILE, id="nobody")["data"]["profile"] is None


def test_bad_inputs_are_bad_user_input_naming_the_field(service: Service) -> None:
    cases = {
        "input.occurredAt": interaction("e-1", occurredAt=now_iso(minutes=10)),
        "input.eventId": interaction(" "),
        "input.type": interaction("e-2", type="Page View"),
        "input.properties": interaction("e-3", properties=[1, 2]),
    }
    for field, bad in cases.items():
        body = service.command(RECORD, input=bad)
        assert code(body) == "BAD_USER_INPUT", body
        assert body["errors"][0]["extensions"]["field"] == field
    traits = service.command(TRAITS, input={"customerId": "c-1", "traits": {"country": "XX"}})
    assert code(traits) == "BAD_USER_INPUT"
    assert traits["errors"][0]["extensions"]["field"] == "input.traits.country"


def test_malformed_documents_and_unknown_enum_values_are_bad_user_input(service: Service) -> None:
    assert code(service.query("{ profile(customerId: ) }")) == "BAD_USER_INPUT"
    unknown = service.command(GRANT, input={"customerId": "c", "purpose": "COOKIES", "source": "x"})
    assert code(unknown) == "BAD_USER_INPUT"
    naive = service.command(RECORD, input=interaction("e-1", occurredAt="yesterday"))
    assert code(naive) == "BAD_USER_INPUT"


def test_nothing_is_stored_for_a_rejected_batch(service: Service) -> None:
    inputs = [interaction("e-1"), interaction("e-2", occurredAt=now_iso(days=1))]
    body = service.command(RECORD_MANY, inputs=inputs)
    assert body["errors"][0]["extensions"]["field"] == "inputs[1].occurredAt"
    history = service.audit('{ history(customerId: "c-1") { events { type } } }')
    assert history["data"]["history"]["events"] == []


def test_api_keys_gate_each_endpoint(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    keys = {"writer": frozenset({"commands"}), "reader": frozenset({"query"})}
    service = start_service(with_settings(settings, api_keys=keys))
    anonymous = service.gql("/graphql", PROFILE, id="c-1")
    assert (anonymous["_status"], code(anonymous)) == (401, "UNAUTHENTICATED")
    wrong = service.gql(
        "/commands/graphql", RECORD, {"Authorization": "Bearer reader"}, input=interaction("e")
    )
    assert (wrong["_status"], code(wrong)) == (403, "FORBIDDEN")
    ok = service.gql(
        "/commands/graphql", RECORD, {"Authorization": "Bearer writer"}, input=interaction("e")
    )
    assert ok["data"]["recordInteraction"]["version"] == 2


def test_a_min_position_not_reached_in_time_says_so(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    service = start_service(with_settings(settings, min_position_timeout=0.2))
    written = service.command(RECORD, input=interaction("e-1"))["data"]["recordInteraction"]
    body = service.query(PROFILE, id="c-1", min=written["position"] + 1_000)
    assert body["data"]["profile"]["version"] == 2  # still answered, from what is there
    assert body["extensions"]["readYourWrites"] == {
        "minPosition": written["position"] + 1_000,
        "reached": False,
        "position": written["position"],
    }


DEFINE = (
    """mutation($input: SegmentInput!) { defineSegment(input: $input) { id version position } }"""
)
RETIRE = """mutation($id: ID!) { retireSegment(id: $id) { id version } }"""


def test_segments_are_defined_versioned_and_retired_over_http(service: Service) -> None:
    rule = {"event": {"type": "product_view", "atLeast": 3, "within": "PT10M"}}
    segment = {"id": "high-intent", "name": "High intent", "rule": rule}
    first = service.command(DEFINE, input=segment)["data"]["defineSegment"]
    changed = service.command(
        DEFINE, input={**segment, "rule": {"score": {"op": "gte", "value": 40}}}
    )
    assert (first["version"], changed["data"]["defineSegment"]["version"]) == (1, 2)
    assert service.command(RETIRE, id="high-intent")["data"]["retireSegment"]["version"] == 3
    bad = service.command(
        DEFINE, input={**segment, "rule": {"all": [{"event": {"within": "P7X"}}]}}
    )
    assert (code(bad), bad["errors"][0]["extensions"]["field"]) == (
        "BAD_USER_INPUT",
        "input.rule.all[0].event.within",
    )
    assert code(service.command(RETIRE, id="unknown")) == "NOT_FOUND"


TRAITS_ONCE = """mutation($input: TraitsInput!) {
  updateTraits(input: $input) { version position duplicate }
}"""
ERASE = """mutation($input: EraseInput!) { eraseProfile(input: $input) { version } }"""


def test_a_traits_update_sent_again_with_its_event_id_is_a_duplicate(service: Service) -> None:
    update = {"eventId": "t-1", "customerId": "c-1", "traits": {"loyaltyTier": "gold"}}
    first = service.command(TRAITS_ONCE, input=update)["data"]["updateTraits"]
    again = service.command(TRAITS_ONCE, input=update)["data"]["updateTraits"]
    assert again == {**first, "duplicate": True}


def test_a_repeated_event_id_of_an_erased_customer_answers_erased(service: Service) -> None:
    service.command(RECORD, input=interaction("e-1"))
    erase = {"customerId": "c-1", "reason": "GDPR art. 17", "requestedBy": "staff-1"}
    assert service.command(ERASE, input=erase)["data"]["eraseProfile"]
    assert code(service.command(RECORD, input=interaction("e-1"))) == "ERASED"
