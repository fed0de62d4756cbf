"""What one request may cost is bounded and refused before it runs: the body's size (HTTP 413),
a document's tokens, depth, aliases, fields and cost, a list argument's length (all
BAD_USER_INPUT naming the limit in `extensions.limit`), and the Redis connections a request
can hold, so that one client's hostile query never fails another client's."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import httpx
import pytest
import redis
from graphql import get_introspection_query

from adapters.settings import RequestLimits, Settings
from api.app import PATHS
from api.bootstrap import QUERY_CLIENT_NAME
from tests.integration.conftest import Service, with_settings
from tests.integration.queries import GRANT, PROFILE, RECORD, RECORD_MANY
from tests.integration.test_commands_over_http import code, interaction

DEFINE = "mutation($input: SegmentInput!) { defineSegment(input: $input) { position } }"
SEGMENTS = "s{n}: segments {{ id state size }}"


def limit(answer: dict[str, Any]) -> str | None:
    extensions: dict[str, Any] = answer["errors"][0]["extensions"]
    assert extensions["code"] == "BAD_USER_INPUT", answer
    return extensions.get("limit")


def aliased(template: str, n: int) -> str:
    return "{ " + " ".join(template.format(n=i) for i in range(n)) + " }"


def nested_introspection(depth: int) -> str:
    inner = "name"
    for _ in range(depth):
        inner = f"ofType {{ {inner} }}"
    return f"{{ __schema {{ types {{ fields {{ type {{ {inner} }} }} }} }} }}"


def with_limits(settings: Settings, **changes: int) -> Settings:
    return with_settings(settings, limits=replace(RequestLimits(), **changes))


@pytest.fixture
def quiet(settings: Settings, start_service: Callable[..., Service]) -> Service:
    return start_service(settings, project=False)


def test_a_body_over_the_limit_is_http_413_on_every_endpoint_however_it_is_sent(
    quiet: Service,
) -> None:
    padding = "x" * quiet.settings.limits.body_bytes
    body = json.dumps({"query": "{ __typename }", "variables": {"pad": padding}}).encode()

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count
        for start in range(0, len(body), 65_536):
            yield body[start : start + 65_536]

    for path in PATHS.values():
        sent = [
            quiet.client.post(path, content=body, headers={"content-type": "application/json"}),
            quiet.client.post(path, content=chunks(), headers={"content-type": "application/json"}),
        ]
        for response in sent:
            assert response.status_code == 413, (path, response.text[:200])
            assert limit(response.json()) == "bodyBytes"
            assert "PROFILES_MAX_BODY_BYTES" in response.json()["errors"][0]["message"]
        small = quiet.client.post(path, json={"query": "{ __typename }"})
        assert small.status_code == 200 and "errors" not in small.json(), small.text


def test_a_ten_megabyte_body_is_refused_without_being_read(quiet: Service) -> None:
    sent = 0

    def ten_megabytes() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(160):
            sent += 65_536
            yield b"x" * 65_536

    response = quiet.client.post(
        "/graphql",
        content=ten_megabytes(),
        headers={"content-type": "application/json", "content-length": str(160 * 65_536)},
    )
    assert response.status_code == 413
    assert limit(response.json()) == "bodyBytes"


def test_alias_bombs_are_refused_before_they_run_and_others_are_served(
    service: Service,
) -> None:
    grant = {"customerId": "c-1", "purpose": "EMAIL", "source": "form"}
    position = service.command(GRANT, input=grant)["data"]["grantConsent"]["position"]
    assert service.query(PROFILE, id="c-1", min=position)["data"]["profile"]
    # 2,000 aliases are over the token limit already; 1,000 are parsed, then counted.
    bombs = {aliased(SEGMENTS, 2_000): "tokens", aliased(SEGMENTS, 1_000): "aliases"}
    with ThreadPoolExecutor(8) as pool:
        sent = [(pool.submit(service.query, b), k) for b, k in bombs.items() for _ in range(8)]
        others = [pool.submit(service.query, PROFILE, id="c-1") for _ in range(16)]
        for future, expected in sent:
            answer = future.result()
            assert (answer["_status"], limit(answer)) == (200, expected), answer
            assert answer.get("data") is None
            assert f"PROFILES_MAX_{expected.upper()}" in answer["errors"][0]["message"]
        for future in others:
            answer = future.result()
            assert "errors" not in answer, answer
            assert answer["data"]["profile"]["customerId"] == "c-1"


def test_many_typenames_are_refused_by_their_count_of_fields_aliases_or_tokens(
    quiet: Service,
) -> None:
    plain = "{ " + " ".join(["__typename"] * 2_000) + " }"
    cases = {
        plain: "fields",
        aliased("t{n}: __typename", 2_000): "aliases",
        aliased("t{n}: __typename", 20_000): "tokens",  # 60,000 tokens: never parsed whole
    }
    for document, expected in cases.items():
        for path in PATHS.values():
            answer = quiet.gql(path, document)
            assert limit(answer) == expected, (path, expected, answer["errors"][0])
            assert answer.get("data") is None


def test_depth_is_limited_but_the_standard_introspection_query_is_served(
    quiet: Service,
) -> None:
    for path in PATHS.values():
        answer = quiet.gql(path, get_introspection_query(descriptions=True))
        assert "errors" not in answer, answer["errors"]
        assert answer["data"]["__schema"]["types"]
        deep = quiet.gql(path, nested_introspection(30))
        assert limit(deep) == "depth", deep
        assert "PROFILES_MAX_DEPTH" in deep["errors"][0]["message"]


def test_a_document_that_may_answer_too_many_values_is_refused_by_its_cost(
    quiet: Service,
) -> None:
    costly = """query($ids: [ID!]!) {
      profiles(customerIds: $ids) { recentInteractions(first: 100) { eventId type occurredAt } }
    }"""
    answer = quiet.query(costly, ids=["c-1"])
    assert limit(answer) == "cost", answer
    # The same shape for a bounded page and a literal list is cheap enough.
    cheap = '{ profiles(customerIds: ["c-1", "c-2"]) { recentInteractions(first: 10) { type } } }'
    answer = quiet.query(cheap)
    assert "errors" not in answer and answer["data"]["profiles"] == [None, None], answer


def test_lists_over_their_length_are_refused_naming_the_argument(quiet: Service) -> None:
    profiles = "query($ids: [ID!]!) { profiles(customerIds: $ids) { customerId } }"
    answer = quiet.query(profiles, ids=[f"c-{n}" for n in range(501)])
    assert limit(answer) == "listLength", answer
    assert answer["errors"][0]["extensions"]["field"] == "customerIds", answer
    assert "errors" not in quiet.query(profiles, ids=[f"c-{n}" for n in range(500)])
    # The commands side, on its fast path and through strawberry (an operation name it
    # does not plan), refuses a batch over 1,000 the same way.
    inputs = [interaction(f"e-{n}", customer="c-1") for n in range(1_001)]
    for document in (RECORD_MANY, RECORD_MANY.replace("mutation(", "mutation Many(")):
        answer = quiet.command(document, inputs=inputs)
        assert limit(answer) == "listLength", answer
        assert answer["errors"][0]["extensions"]["field"] == "inputs", answer


def test_an_id_longer_than_any_write_accepts_is_refused_by_every_read(quiet: Service) -> None:
    long_id = "c" * 201
    assert code(quiet.command(RECORD, input=interaction("e-1", customer=long_id))) == (
        "BAD_USER_INPUT"
    )
    reads = [
        quiet.query(PROFILE, id=long_id),
        quiet.query("query($i: [ID!]!) { profiles(customerIds: $i) { version } }", i=[long_id]),
        quiet.audit("query($c: ID!) { history(customerId: $c) { events { type } } }", c=long_id),
    ]
    for answer in reads:
        assert code(answer) == "BAD_USER_INPUT", answer
        assert "201 characters; at most 200" in answer["errors"][0]["message"], answer


def test_the_limits_are_configured_from_the_environment(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    limited = with_limits(settings, aliases=5, depth=4, body_bytes=2_048)
    service = start_service(limited, project=False)
    assert "errors" not in service.query(aliased(SEGMENTS, 5))
    assert limit(service.query(aliased(SEGMENTS, 6))) == "aliases"
    assert limit(service.query(nested_introspection(2))) == "depth"
    # A GET's URL parameters count as its body.
    for size, status in ((1_500, 200), (2_500, 413)):
        params = {"query": "{ __typename }", "variables": json.dumps({"pad": "x" * size})}
        assert service.client.get("/graphql", params=params).status_code == status
    env = {"PROFILES_MAX_ALIASES": "5", "PROFILES_MAX_DEPTH": "4"}
    configured = Settings.from_env({**env, "PROFILES_MAX_BODY_BYTES": "2048"}).limits
    assert (configured.aliases, configured.depth, configured.body_bytes) == (5, 4, 2_048)


def query_connections(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return sum(1 for c in client.client_list() if c.get("name") == QUERY_CLIENT_NAME)
    finally:
        client.close()


def test_a_request_holds_a_bounded_share_of_redis_connections(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    assert settings.redis_url is not None
    bounded = with_limits(
        settings, aliases=2_000, fields=5_000, cost=1_000_000, redis_connections=6
    )
    service = start_service(bounded, project=False)
    service.command(DEFINE, input={"id": "all", "name": "All", "rule": {"consent": "EMAIL"}})
    heavy = aliased(SEGMENTS, 1_000)  # a thousand reads of the segment list each
    most = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal most
        while not done.is_set():
            most = max(most, query_connections(str(settings.redis_url)))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: service.query(heavy), range(8)))
            other = httpx.post(
                f"{service.base_url}/graphql", json={"query": PROFILE, "variables": {"id": "c"}}
            )
    finally:
        done.set()
        watcher.join()
    for answer in answers:
        assert "errors" not in answer, answer["errors"][:1]
        assert len(answer["data"]) == 1_000
    assert other.status_code == 200 and "errors" not in other.json(), other.text
    assert 0 < most <= 6, most
