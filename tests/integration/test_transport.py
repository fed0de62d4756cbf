"""GraphQL over HTTP as an ESP's send-time hook uses it: GET for queries, automatic persisted
queries (a URL with a hash and variables is enough), and answers no cache keeps."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from adapters.persisted_store import RedisPersistedQueries
from adapters.settings import Settings
from api.app import PATHS
from tests.integration.conftest import Service, with_settings
from tests.integration.queries import GRANT, RECORD
from tests.integration.test_commands_over_http import code, interaction

JSON = "application/json"
ESP = "query($id: ID!) { profile(customerId: $id) { customerId canEmail traits } }"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def persisted(text: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha(text)}}


def get(service: Service, path: str, **params: Any) -> httpx.Response:
    encoded = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
    return service.client.get(path, params=encoded)


def post(service: Service, path: str, **body: Any) -> httpx.Response:
    return service.client.post(path, json=body)


@pytest.fixture
def quiet(settings: Settings, start_service: Callable[..., Service]) -> Service:
    return start_service(settings, project=False)


def test_queries_can_be_sent_with_get_on_the_query_and_audit_sides(quiet: Service) -> None:
    quiet.command(GRANT, input={"customerId": "c-1", "purpose": "EMAIL", "source": "form"})
    answer = get(quiet, "/graphql", query=ESP, variables={"id": "c-1"})
    assert answer.status_code == 200 and answer.json() == {"data": {"profile": None}}
    history = "query($c: ID!) { history(customerId: $c) { events { type } } }"
    audit = get(quiet, "/audit/graphql", query=history, variables={"c": "c-1"}).json()
    assert [e["type"] for e in audit["data"]["history"]["events"]][-1] == "ConsentGranted", audit


def test_a_mutation_sent_with_get_is_refused_and_not_run(quiet: Service) -> None:
    sent = get(quiet, "/commands/graphql", query=RECORD, variables={"input": interaction("e-1")})
    assert sent.status_code == 400 and code(sent.json()) == "BAD_USER_INPUT", sent.text
    assert "GET" in sent.json()["errors"][0]["message"]
    again = quiet.command(RECORD, input=interaction("e-1"))
    assert again["data"]["recordInteraction"]["duplicate"] is False  # the GET stored nothing


def test_an_unknown_hash_asks_for_the_document_once_and_then_a_url_is_enough(
    quiet: Service,
) -> None:
    variables = {"id": "c-1"}
    first = get(quiet, "/graphql", extensions=persisted(ESP), variables=variables)
    assert first.status_code == 200
    error = first.json()["errors"][0]
    assert (error["message"], error["extensions"]["code"]) == (
        "PersistedQueryNotFound",
        "PERSISTED_QUERY_NOT_FOUND",
    )
    registered = post(quiet, "/graphql", query=ESP, variables=variables, extensions=persisted(ESP))
    assert registered.json() == {"data": {"profile": None}}
    for _ in range(2):
        by_hash = get(quiet, "/graphql", extensions=persisted(ESP), variables=variables)
        assert by_hash.json() == {"data": {"profile": None}}, by_hash.text


def test_the_query_sides_persisted_queries_outlive_the_process(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    first = start_service(settings, "query", project=False)
    post(first, "/graphql", query=ESP, variables={"id": "c"}, extensions=persisted(ESP))
    replica = start_service(settings, "query", project=False)  # another process, same Redis
    answer = get(replica, "/graphql", extensions=persisted(ESP), variables={"id": "c"})
    assert answer.json() == {"data": {"profile": None}}, answer.text


def test_a_hash_that_is_not_the_documents_is_refused_naming_the_field(quiet: Service) -> None:
    wrong = {"persistedQuery": {"version": 1, "sha256Hash": sha(ESP + " ")}}
    cases = [
        {"query": ESP, "extensions": wrong},
        {"query": ESP, "extensions": {"persistedQuery": {"version": 2, "sha256Hash": sha(ESP)}}},
        {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "not-hex"}}},
        {"extensions": {"persistedQuery": "abc"}},
    ]
    for body in cases:
        answer = post(quiet, "/graphql", variables={"id": "c"}, **body)
        assert answer.status_code == 400, answer.text
        error = answer.json()["errors"][0]
        assert error["extensions"] == {
            "code": "BAD_USER_INPUT",
            "field": "extensions.persistedQuery",
        }
    # The mismatched document was not registered under either hash.
    unknown = post(quiet, "/graphql", extensions=persisted(ESP), variables={"id": "c"})
    assert code(unknown.json()) == "PERSISTED_QUERY_NOT_FOUND"


def test_persisted_mutations_work_on_the_commands_side_fast_path_and_not(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    for fast_path in (True, False):
        service = start_service(with_settings(settings, fast_path=fast_path), project=False)
        event = interaction(f"e-{fast_path}")
        unknown = post(service, "/commands/graphql", extensions=persisted(RECORD), variables={})
        assert code(unknown.json()) == "PERSISTED_QUERY_NOT_FOUND"
        first = post(
            service, "/commands/graphql", query=RECORD, variables={"input": event},
            extensions=persisted(RECORD),
        )  # fmt: skip
        assert first.json()["data"]["recordInteraction"]["duplicate"] is False, first.text
        again = post(
            service, "/commands/graphql", extensions=persisted(RECORD), variables={"input": event}
        )
        assert again.json()["data"]["recordInteraction"]["duplicate"] is True, again.text


def test_documents_with_string_values_are_not_kept_in_the_shared_registry(
    quiet: Service,
) -> None:
    assert quiet.settings.redis_url is not None
    inline = '{ profile(customerId: "ada@example.com") { customerId } }'
    answer = post(quiet, "/graphql", query=inline, extensions=persisted(inline))
    assert answer.json() == {"data": {"profile": None}}
    post(quiet, "/graphql", query=ESP, variables={"id": "c"}, extensions=persisted(ESP))
    client = redis.Redis.from_url(quiet.settings.redis_url, decode_responses=True)
    try:
        kept = client.hgetall(f"{quiet.settings.redis_namespace}persisted-queries")
    finally:
        client.close()
    assert kept == {sha(ESP): ESP}


def test_the_shared_registry_is_bounded(settings: Settings) -> None:
    async def fill() -> None:
        client = aioredis.Redis.from_url(str(settings.redis_url), decode_responses=True)
        try:
            registry = RedisPersistedQueries(client, settings.redis_namespace, most=2)
            assert await registry.put("a" * 64, "{ a: __typename }")
            assert await registry.put("b" * 64, "{ b: __typename }")
            assert not await registry.put("c" * 64, "{ c: __typename }")
            assert await registry.put("a" * 64, "{ a: __typename }")  # already there: fine
            assert await registry.get("c" * 64) is None
            assert await registry.get("a" * 64) == "{ a: __typename }"
        finally:
            await client.delete(registry.key)
            await client.aclose()

    asyncio.run(fill())


def test_every_answer_says_no_store(quiet: Service) -> None:
    answers = [post(quiet, path, query="{ __typename }") for path in PATHS.values()] + [
        get(quiet, "/graphql", query=ESP, variables={"id": "c"}),
        post(quiet, "/graphql", query="{ nope }"),  # an error
        quiet.client.post(
            "/graphql", content=b"null", headers={"content-type": "application/json"}
        ),
        quiet.client.post("/graphql", content=b"x" * 2_000_000),  # 413
        post(quiet, "/graphql", extensions=persisted("{ x }")),
    ]
    for answer in answers:
        assert answer.headers.get("cache-control") == "no-store", (answer.status_code, answer.text)


def test_a_get_naming_a_persisted_query_needs_a_key_like_any_operation(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    keyed = with_settings(settings, api_keys={"k-query": frozenset({"query"})})
    service = start_service(keyed, project=False)
    anonymous = get(service, "/graphql", extensions=persisted(ESP), variables={"id": "c"})
    assert anonymous.status_code == 401 and code(anonymous.json()) == "UNAUTHENTICATED"
    headers = {"Authorization": "Bearer k-query"}
    post_body = {"query": ESP, "variables": {"id": "c"}, "extensions": persisted(ESP)}
    assert service.client.post("/graphql", json=post_body, headers=headers).status_code == 200
    params = {"extensions": json.dumps(persisted(ESP)), "variables": '{"id": "c"}'}
    keyed_get = service.client.get("/graphql", params=params, headers=headers)
    assert keyed_get.json() == {"data": {"profile": None}}
