"""The compiled profile reads answer byte for byte as strawberry does, on random documents and
answers: two query services on the same read models, one with the fast path and one without."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.settings import Settings
from tests.integration.conftest import Service, with_settings
from tests.integration.queries import GRANT, RECORD_MANY, TRAITS, WITHDRAW

NOW = datetime.now(UTC)
PROFILE_LEAVES = [
    "customerId", "version", "traits", "canEmail", "canPersonalize", "engagementScore",
    "segments", "interactionCounts", "firstSeenAt", "lastSeenAt", "__typename",
]  # fmt: skip
CONSENT_LEAVES = ["purpose", "granted", "source", "policyVersion", "changedAt", "__typename"]
INTERACTION_LEAVES = [
    "eventId", "type", "occurredAt", "channel", "sessionId", "properties", "__typename",
]  # fmt: skip
KNOWN = [f"c-{n}" for n in range(6)]
IDS = [*KNOWN, "nobody", "c" * 201, "", 7]


def seed(service: Service) -> int:
    rng = random.Random(3)
    position = 0
    for n, customer in enumerate(KNOWN):
        purposes = ["EMAIL", "PERSONALIZATION"] if n % 3 else ["EMAIL"]
        for purpose in purposes:
            consent = {"customerId": customer, "purpose": purpose, "source": "form"}
            service.command(GRANT, input={**consent, "policyVersion": f"v{n}"})
        traits = {"firstName": f"Ada{n}", "country": "DE", "vip": n % 2 == 0}
        service.command(TRAITS, input={"customerId": customer, "traits": traits})
        inputs = [
            {
                "eventId": f"{customer}-{k}",
                "customerId": customer,
                "type": rng.choice(["page_view", "product_view", "purchase"]),
                "occurredAt": (NOW - timedelta(minutes=rng.randrange(1, 900))).isoformat(),
                **({"channel": "web"} if k % 2 else {}),
                **({"sessionId": f"s-{k}"} if k % 3 else {}),
                **({"properties": {"sku": f"sku-{k}", "value": 9.5}} if k % 4 else {}),
            }
            for k in range(rng.randrange(0, 15))
        ]
        if inputs:
            results = service.command(RECORD_MANY, inputs=inputs)["data"]["recordInteractions"]
            position = max(position, *(r["position"] for r in results))
    withdrawn = {"customerId": "c-5", "purpose": "PERSONALIZATION", "source": "form"}
    answer = service.command(WITHDRAW, input=withdrawn)
    return max(position, answer["data"]["withdrawConsent"]["position"])


def leaves(rng: random.Random, names: list[str]) -> str:
    chosen = rng.sample(names, rng.randrange(1, len(names) + 1))
    return " ".join(
        f"{name}{n}: {name}" if rng.random() < 0.2 else name for n, name in enumerate(chosen)
    )


def profile_selection(rng: random.Random, variables: dict[str, Any]) -> str:
    parts = [leaves(rng, PROFILE_LEAVES)]
    if rng.random() < 0.5:
        parts.append(f"consents {{ {leaves(rng, CONSENT_LEAVES)} }}")
    if rng.random() < 0.7:
        first = rng.choice(["", "(first: 3)", "(first: 0)", "(first: 25)", "(first: $first)"])
        if first == "(first: $first)":
            variables["first"] = rng.choice([1, 5, 12, None, -1, 60])
        alias = "r: " if rng.random() < 0.2 else ""
        parts.append(f"{alias}recentInteractions{first} {{ {leaves(rng, INTERACTION_LEAVES)} }}")
    return " ".join(parts)


def document(rng: random.Random) -> tuple[str, dict[str, Any]]:
    variables: dict[str, Any] = {}
    roots = []
    for n in range(rng.choice([1, 1, 1, 2, 3])):
        selection = profile_selection(rng, variables)
        alias = f"p{n}: " if n or rng.random() < 0.3 else ""
        if rng.random() < 0.4:
            ids = [rng.choice(IDS) for _ in range(rng.randrange(0, 5))]
            if rng.random() < 0.5:
                variables[f"ids{n}"] = ids
                roots.append(f"{alias}profiles(customerIds: $ids{n}) {{ {selection} }}")
            else:
                literal = json.dumps([str(i) for i in ids])
                roots.append(f"{alias}profiles(customerIds: {literal}) {{ {selection} }}")
        elif rng.random() < 0.7:
            variables[f"id{n}"] = rng.choice(IDS)
            roots.append(f"{alias}profile(customerId: $id{n}) {{ {selection} }}")
        else:
            roots.append(
                f"{alias}profile(customerId: {json.dumps(str(rng.choice(IDS)))}) {{ {selection} }}"
            )
    declared = ", ".join(
        f"${name}: {'Int' if name == 'first' else '[ID!]!' if name.startswith('ids') else 'ID!'}"
        for name in variables
    )
    head = f"query Q({declared})" if declared else "query Q"
    return f"{head} {{ {' '.join(roots)} }}", variables


def answered_fast(service: Service) -> float:
    text = service.client.get("/metrics").text
    found = re.search(r"^profiles_graphql_fast_path_total\{.*\} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.fixture
def pair(settings: Settings, start_service: Callable[..., Service]) -> tuple[Service, Service]:
    writer = start_service(settings)  # commands and the projector
    position = seed(writer)
    waited = "query($id: ID!, $m: Long) { profile(customerId: $id, minPosition: $m) { version } }"
    assert writer.query(waited, id="c-5", m=position)["data"]["profile"]

    # One instant for both: the engagement score is valued at the time of the read.
    def clock() -> datetime:
        return NOW + timedelta(hours=1)

    fast = start_service(settings, "query", project=False, clock=clock)
    slow = start_service(
        with_settings(settings, fast_path=False), "query", project=False, clock=clock
    )
    return fast, slow


def test_compiled_reads_answer_as_strawberry_does(pair: tuple[Service, Service]) -> None:
    fast, slow = pair
    rng = random.Random(11)
    for n in range(250):
        query, variables = document(rng)
        body = json.dumps({"query": query, "variables": variables})
        got = [
            s.client.post("/graphql", content=body, headers={"content-type": "application/json"})
            for s in (fast, slow)
        ]
        assert got[0].status_code == got[1].status_code, (n, query, variables)
        assert got[0].content == got[1].content, (n, query, variables, got[0].text, got[1].text)
    planned = answered_fast(fast)
    assert planned >= 100, f"only {planned} of 250 documents took the compiled path"
    assert answered_fast(slow) == 0


def test_a_get_with_a_persisted_hash_takes_the_compiled_path(
    pair: tuple[Service, Service],
) -> None:
    fast, slow = pair
    query = (
        "query($id: ID!) { profile(customerId: $id) { traits canEmail segments "
        "recentInteractions(first: 5) { type occurredAt } } }"
    )
    digest = hashlib.sha256(query.encode()).hexdigest()
    extensions = json.dumps({"persistedQuery": {"version": 1, "sha256Hash": digest}})
    register = {"query": query, "variables": {"id": "c-1"}, "extensions": json.loads(extensions)}
    for service in (fast, slow):
        service.client.post("/graphql", json=register)
    before = answered_fast(fast)
    params = {"extensions": extensions, "variables": json.dumps({"id": "c-1"})}
    got = [s.client.get("/graphql", params=params) for s in (fast, slow)]
    assert got[0].content == got[1].content and b'"traits"' in got[0].content, got[0].text
    assert answered_fast(fast) == before + 1
