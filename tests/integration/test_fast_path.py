"""The compiled mutations answer exactly as the general executor does, on the same requests."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.migrate import migrate
from adapters.settings import Settings
from tests.integration.conftest import Service

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
RESULT = "{ id version position duplicate suppressed }"
DOCUMENTS = [
    f"mutation($input: InteractionInput!) {{ recordInteraction(input: $input) {RESULT} }}",
    "mutation Named($i: InteractionInput!) "
    "{ r: recordInteraction(input: $i) { __typename id p: position } }",
    f"mutation($inputs: [InteractionInput!]!) {{ recordInteractions(inputs: $inputs) {RESULT} }}",
    # Not for the fast path; the general executor must answer them the same way either way.
    f"mutation($input: InteractionInput) {{ recordInteraction(input: $input) {RESULT} }}",
    "mutation($input: InteractionInput!) { recordInteraction(input: $input) { id nope } }",
    'mutation { recordInteraction(input: {eventId: "x", customerId: "c", type: "t", '
    'occurredAt: "2026-05-01T11:00:00Z"}) { id } }',
    "mutation($input: InteractionInput!, $unused: Int) { recordInteraction(input: $input) { id } }",
]


def random_input(rng: random.Random) -> Any:
    if rng.random() < 0.5:
        return {
            "eventId": f"e-{rng.randrange(60)}",
            "customerId": f"c-{rng.randrange(5)}",
            "type": "page_view",
            "occurredAt": (NOW - timedelta(minutes=rng.randrange(1000))).isoformat(),
            "properties": {"sku": rng.choice("abc")},
        }
    value: dict[str, Any] = {
        "eventId": rng.choice(
            [f"e-{rng.randrange(30)}", rng.randrange(30), "", " ", None, 1.5, True]
        ),
        "customerId": rng.choice([f"c-{rng.randrange(5)}", rng.randrange(5), ""]),
        "type": rng.choice(["page_view", "purchase", "Page View", 3, None]),
        "occurredAt": rng.choice(
            [
                (NOW - timedelta(minutes=rng.randrange(1000))).isoformat(),
                (NOW + timedelta(minutes=10)).isoformat(),
                "2026-05-01T12:00:00",  # no offset
                "yesterday",
                12,
            ]
        ),
        "sessionId": rng.choice([None, "s-1", 7]),
        "channel": rng.choice([None, "web", ""]),
        "properties": rng.choice([None, {"sku": "a"}, [1, 2], {"_type_": "x"}, "text"]),
    }
    for name in rng.sample(sorted(value), rng.randrange(3)):
        del value[name]  # missing fields, required or not
    if rng.random() < 0.1:
        value["unknown"] = 1
    return value if rng.random() < 0.95 else "not an object"


def request(rng: random.Random) -> dict[str, Any]:
    document = rng.choice(DOCUMENTS)
    many = "inputs" in document
    inputs = [random_input(rng) for _ in range(rng.randrange(0, 4))]
    variables: dict[str, Any] = (
        {"inputs": inputs}
        if many
        else {"input" if "$input" in document else "i": random_input(rng)}
    )
    body: dict[str, Any] = {"query": document, "variables": variables}
    if "Named" in document and rng.random() < 0.3:
        body["operationName"] = rng.choice(["Named", "Other"])
    return body


def test_fast_path_and_general_executor_answer_alike(
    settings: Settings,
    new_database: Callable[[], str],
    start_service: Callable[..., Service],
) -> None:
    other_db = new_database()
    migrate(other_db)
    fast = start_service(settings, "commands", project=False, clock=lambda: NOW)
    general = start_service(
        replace(
            settings,
            database_url=other_db,
            fast_path=False,
            redis_namespace=f"g{uuid.uuid4().hex[:6]}:",
        ),
        "commands",
        project=False,
        clock=lambda: NOW,
    )
    rng = random.Random(11)
    answered = {"data": 0, "errors": 0}
    for _ in range(400):
        body = request(rng)
        a = fast.client.post("/commands/graphql", json=body)
        b = general.client.post("/commands/graphql", json=body)
        assert (a.status_code, a.content) == (b.status_code, b.content), body
        answered["errors" if "errors" in a.json() else "data"] += 1
    # Both kinds of answer were compared, many times, and the fast path took a good share.
    assert answered["data"] > 40 and answered["errors"] > 40, answered
    metrics = fast.client.get("/metrics").text
    line = next(x for x in metrics.splitlines() if x.startswith("profiles_graphql_fast_path_total"))
    assert float(line.rsplit(" ", 1)[1]) > 40, line
