"""API keys over HTTP: the Bearer scheme in any case, WWW-Authenticate on 401, and per-key
rate limits answered with 429, RATE_LIMITED and Retry-After."""

from __future__ import annotations

import math
from collections.abc import Callable

from adapters.settings import Settings
from tests.integration.conftest import Service, with_settings
from tests.integration.queries import PROFILE, RECORD
from tests.integration.test_commands_over_http import code, interaction

SEGMENTS = "{ segments { id } }"


def test_unauthenticated_answers_carry_www_authenticate_bearer(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    keys = {"reader": frozenset({"query"})}
    service = start_service(with_settings(settings, api_keys=keys), project=False)
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic reader"}):
        response = service.client.post("/graphql", json={"query": SEGMENTS}, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_the_bearer_scheme_is_case_insensitive(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    keys = {"reader": frozenset({"query"})}
    service = start_service(with_settings(settings, api_keys=keys), project=False)
    for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
        body = service.gql("/graphql", SEGMENTS, {"Authorization": f"{scheme} reader"})
        assert (body["_status"], body.get("errors")) == (200, None), scheme
    x_api_key = service.gql("/graphql", SEGMENTS, {"X-API-Key": "reader"})
    assert x_api_key["_status"] == 200


def test_a_key_over_its_rate_gets_429_with_retry_after_and_others_are_unaffected(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    # PROFILES_API_KEYS="slow:query|commands;rate=0.2;burst=3,free:query"
    limited = Settings.from_env(
        {"PROFILES_API_KEYS": "slow:query|commands;rate=0.2;burst=3,free:query"}
    )
    service = start_service(
        with_settings(settings, api_keys=limited.api_keys, rate_limits=limited.rate_limits),
        project=False,
    )
    slow = {"Authorization": "Bearer slow"}
    # The burst, shared by the process's endpoints: 3 requests, whichever endpoint they use.
    assert service.gql("/graphql", PROFILE, slow, id="c-1")["_status"] == 200
    assert service.gql("/graphql", SEGMENTS, slow)["_status"] == 200
    written = service.gql("/commands/graphql", RECORD, slow, input=interaction("e-1"))
    assert written["data"]["recordInteraction"]["version"] == 2
    response = service.client.post("/graphql", json={"query": SEGMENTS}, headers=slow)
    assert response.status_code == 429
    body = response.json()
    assert code(body) == "RATE_LIMITED"
    retry_after = body["errors"][0]["extensions"]["retryAfter"]
    # One token comes back every 5 s at 0.2 a second: the wait is up to that, in seconds.
    assert 0 < retry_after <= 5
    assert response.headers["retry-after"] == str(math.ceil(retry_after))
    refused = service.gql("/commands/graphql", RECORD, slow, input=interaction("e-2"))
    assert (refused["_status"], code(refused)) == (429, "RATE_LIMITED")
    unlimited = service.gql("/graphql", PROFILE, {"Authorization": "Bearer free"}, id="c-1")
    assert unlimited["_status"] == 200 and "errors" not in unlimited
