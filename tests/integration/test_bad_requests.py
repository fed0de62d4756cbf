"""Every bad request gets the contract's code over HTTP: never a plain-text 500, never INTERNAL
for the caller's own mistake; and an unexpected error answers INTERNAL with its trace id."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
import redis
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from adapters.settings import Settings
from adapters.telemetry import setup_telemetry
from api.app import PATHS, RoleGraphQL
from api.bootstrap import build_services
from api.context import Context
from api.query_schema import build_query_schema
from domain.ids import customer_uuid
from projections.profile import ProfileKeys
from tests.integration.conftest import Service, with_settings
from tests.integration.queries import GRANT, PROFILE, RECORD, TRAITS
from tests.integration.test_commands_over_http import code, interaction

HISTORY = '{ history(customerId: "c-1") { events { type } } }'


def post(service: Service, path: str, body: bytes) -> tuple[int, str, dict[str, Any]]:
    response = service.client.post(path, content=body, headers={"content-type": "application/json"})
    return response.status_code, response.headers["content-type"], response.json()


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_body_that_is_not_a_json_object_is_http_400_on_every_endpoint(
    settings: Settings, start_service: Callable[..., Service], fast_path: bool
) -> None:
    service = start_service(with_settings(settings, fast_path=fast_path), project=False)
    for path in PATHS.values():
        for body in (b"null", b"3", b'"query"', b"true", b"[]"):
            status, kind, answer = post(service, path, body)
            assert (status, kind, code(answer)) == (400, "application/json", "BAD_USER_INPUT")
            assert "must be a JSON object" in answer["errors"][0]["message"], answer


def test_a_body_that_is_not_utf8_is_http_400_on_every_endpoint(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    service = start_service(settings, project=False)
    document = json.dumps({"query": "{ __typename }"})
    for path in PATHS.values():
        for body in (
            b'{"query": "{ __typename \xff }"}',  # a byte that is no UTF-8
            document.encode("utf-16"),  # json.loads would take it
            document.encode("utf-32"),
        ):
            status, _, answer = post(service, path, body)
            assert (status, code(answer)) == (400, "BAD_USER_INPUT"), answer
            assert "not UTF-8" in answer["errors"][0]["message"]


def test_variables_nested_ten_thousand_deep_are_refused_on_every_endpoint(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    service = start_service(settings, project=False)
    deep = "[" * 10_000 + "]" * 10_000
    documents = {
        "/commands/graphql": RECORD,  # one the fast path plans
        "/graphql": PROFILE,
        "/audit/graphql": HISTORY,
    }
    for path, query in documents.items():
        body = f'{{"query": {json.dumps(query)}, "variables": {{"input": {deep}}}}}'
        status, _, answer = post(service, path, body.encode())
        assert (status, code(answer)) == (400, "BAD_USER_INPUT"), answer
        assert "nests too deeply" in answer["errors"][0]["message"]
    # Deep, yet within what JSON parses: refused by the properties' own bound, naming them.
    nested = interaction("e-1", properties={"a": json.loads("[" * 500 + "]" * 500)})
    body = service.command(RECORD, input=nested)
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", body
    assert error["extensions"]["field"].startswith("input.properties.a[0]")
    assert "nests deeper than 32 levels" in error["message"]


def literal_interaction(occurred_at: str) -> str:
    return (
        'mutation { recordInteraction(input: {eventId: "e-1", customerId: "c-1", '
        f'type: "page_view", occurredAt: "{occurred_at}"}}) {{ id }} }}'
    )


def test_invalid_date_time_and_long_literals_are_bad_user_input_naming_the_field(
    service: Service,
) -> None:
    for occurred_at in (
        "now",
        "2026-02-30T00:00:00Z",
        "2026-02-01T00:00:00+25:00",
        "2026-02-01T00:00:00",  # no offset: RFC 3339 needs one
    ):
        body = service.command(literal_interaction(occurred_at))
        error = body["errors"][0]
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "input.occurredAt"}
        assert occurred_at in error["message"], error
    for literal in ('"str"', "1.5", "99999999999999999999"):
        body = service.query(
            f'{{ profile(customerId: "c-1", minPosition: {literal}) {{ version }} }}'
        )
        assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "minPosition"}
    consent = service.audit(
        '{ consentAt(customerId: "c-1", purpose: EMAIL, at: "yesterday") { granted } }'
    )
    assert consent["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "at"}
    # The same value in a variable is refused alike, the message naming the variable's field.
    naive = service.command(RECORD, input=interaction("e-2", occurredAt="2026-02-01T00:00:00"))
    assert code(naive) == "BAD_USER_INPUT"
    assert ".occurredAt" in naive["errors"][0]["message"]


def test_a_lone_surrogate_in_a_customer_id_is_bad_user_input_on_every_side(
    service: Service,
) -> None:
    lone = "c-\ud800"
    answers = {
        "profile": service.query(PROFILE, id=lone),
        "profiles": service.query(
            "query($ids: [ID!]!) { profiles(customerIds: $ids) { version } }", ids=["c-1", lone]
        ),
        "history": service.audit(
            "query($id: ID!) { history(customerId: $id) { hasNextPage } }", id=lone
        ),
        "record": service.command(RECORD, input=interaction("e-1", customer=lone)),
    }
    fields = {name: body["errors"][0]["extensions"] for name, body in answers.items()}
    assert fields == {
        "profile": {"code": "BAD_USER_INPUT", "field": "customerId"},
        "profiles": {"code": "BAD_USER_INPUT", "field": "customerIds[1]"},
        "history": {"code": "BAD_USER_INPUT", "field": "customerId"},
        "record": {"code": "BAD_USER_INPUT", "field": "input.customerId"},
    }


def test_nul_characters_in_ids_traits_and_properties_are_refused_and_nothing_is_stored(
    service: Service,
) -> None:
    cases = {
        "input.eventId": interaction("e-\x00"),
        "input.customerId": interaction("e-1", customer="c-\x00"),
        "input.properties.category": interaction("e-2", properties={"category": "sh\x00es"}),
        "input.properties.'a\\x00b'": interaction("e-3", properties={"a\x00b": 1}),
    }
    for field, bad in cases.items():
        body = service.command(RECORD, input=bad)
        assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": field}
        assert "NUL" in body["errors"][0]["message"]
    traits = service.command(
        TRAITS, input={"customerId": "c-1", "traits": {"firstName": "A\x00da", "tier": "x"}}
    )
    assert traits["errors"][0]["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "input.traits.firstName",
    }
    literal = service.command(
        'mutation { grantConsent(input: {customerId: "c-\\u0000", purpose: EMAIL, '
        'source: "form"}) { version } }'
    )
    assert literal["errors"][0]["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "input.customerId",
    }
    assert service.audit(HISTORY)["data"]["history"]["events"] == []


def test_a_negative_min_position_is_refused(service: Service) -> None:
    body = service.query(PROFILE, id="c-1", min=-1)
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "minPosition"}


def test_an_explicit_null_argument_means_the_contracts_default(service: Service) -> None:
    service.command(
        GRANT, input={"customerId": "c-1", "purpose": "PERSONALIZATION", "source": "form"}
    )
    written = service.command(RECORD, input=interaction("e-1"))["data"]["recordInteraction"]
    profile = service.query(
        'query($min: Long) { profile(customerId: "c-1", minPosition: $min) '
        "{ recentInteractions(first: null) { eventId } } }",
        min=written["position"],
    )
    assert profile["data"]["profile"]["recentInteractions"] == [{"eventId": "e-1"}], profile
    defined = service.command(
        "mutation($s: SegmentInput!) { defineSegment(input: $s) { position } }",
        s={"id": "all-views", "name": "Views", "rule": {"event": {"type": "product_view"}}},
    )
    service.query(PROFILE, id="c-1", min=defined["data"]["defineSegment"]["position"])
    members = service.query(
        '{ segment(id: "all-views") { members(first: null, after: null) { hasNextPage } } }'
    )
    assert members["data"]["segment"]["members"] == {"hasNextPage": False}, members
    history = service.audit(
        '{ history(customerId: "c-1", after: null, first: null) { events { type } } }'
    )
    types = [e["type"] for e in history["data"]["history"]["events"]]
    assert types == ["Registered", "ConsentGranted", "InteractionRecorded"], history


TRACE_ID = re.compile(r"[0-9a-f]{32}")


def test_an_unexpected_error_answers_internal_with_the_requests_trace_id_logged(
    settings: Settings,
    start_service: Callable[..., Service],
    caplog: pytest.LogCaptureFixture,
) -> None:
    telemetry = setup_telemetry(settings)
    spans = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    service = start_service(settings, "query", project=False, telemetry=telemetry)
    # A read model that is not what the projector writes: a defect of ours, not the caller's.
    assert settings.redis_url is not None
    with redis.Redis.from_url(settings.redis_url) as client:
        key = ProfileKeys(settings.redis_namespace).profile(customer_uuid("c-1"))
        client.hset(key, mapping={"v": "1", "t:email": "{not json"})
    with caplog.at_level(logging.ERROR):
        body = service.query(PROFILE, id="c-1")
    assert body["_status"] == 200
    error = body["errors"][0]
    trace_id = error["extensions"]["traceId"]
    assert error["extensions"] == {"code": "INTERNAL", "traceId": trace_id}
    assert TRACE_ID.fullmatch(trace_id)
    assert "json" not in error["message"].lower() and "Expecting" not in error["message"]
    operation = [s for s in spans.get_finished_spans() if s.name.startswith("graphql")]
    assert [format(s.context.trace_id, "032x") for s in operation] == [trace_id]
    logged = [r for r in caplog.records if trace_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None


class BrokenContext(RoleGraphQL):
    """The view with a context getter that fails, as a bug in it would."""

    async def get_context(self, request: Request, response: Any) -> Context:
        raise RuntimeError("context store at postgres://secret@db failed")


def test_an_error_outside_graphql_execution_is_a_json_internal_answer(
    settings: Settings,
    start_service: Callable[..., Service],
    caplog: pytest.LogCaptureFixture,
) -> None:
    telemetry = setup_telemetry(settings)
    services = build_services(settings, set(), telemetry)  # the context fails before any read
    view = BrokenContext(build_query_schema(), services, "query")
    app = Starlette(routes=[Route("/graphql", view, methods=["GET", "POST"])])
    service = start_service(settings, app=app)
    with caplog.at_level(logging.ERROR):
        response = service.client.post("/graphql", json={"query": "{ segments { id } }"})
    assert (response.status_code, response.headers["content-type"]) == (500, "application/json")
    error = response.json()["errors"][0]
    trace_id = error["extensions"]["traceId"]
    assert error["extensions"] == {"code": "INTERNAL", "traceId": trace_id}
    assert "secret" not in response.text and TRACE_ID.fullmatch(trace_id)
    assert any(trace_id in r.getMessage() and r.exc_info for r in caplog.records)
    # The GET form fails the same way, as JSON.
    got = service.client.get("/graphql", params={"query": "{ segments { id } }"})
    assert (got.status_code, got.json()["errors"][0]["extensions"]["code"]) == (500, "INTERNAL")
