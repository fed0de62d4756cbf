"""Generated operations over all three schemas, sent over HTTP to a service on real stores.

hypothesis-graphql writes documents from the served schemas themselves (built as api/app.py
builds them): valid ones (Mode.POSITIVE), which reach the resolvers and the stores, and ones
with a single schema violation (Mode.NEGATIVE), which must be refused before execution. Either
way no answer is an HTTP 5xx, and every error carries one of the contract's codes; INTERNAL,
a defect of ours, is a failure too. Mutations write events as they go.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import graphql
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema, nodes
from strawberry import Schema

from adapters.settings import Settings
from api.audit_schema import build_audit_schema
from api.commands_schema import build_command_schema
from api.query_schema import build_query_schema
from tests.integration.conftest import Service, with_settings

# The contract's codes, less INTERNAL: no generated request may find a defect.
CODES = {
    "BAD_USER_INPUT",
    "ERASED",
    "NOT_FOUND",
    "CONFLICT",
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "UNAVAILABLE",
    "RATE_LIMITED",
    "PERSISTED_QUERY_NOT_FOUND",
}
SCHEMAS: dict[str, Callable[[], Schema]] = {
    "/commands/graphql": build_command_schema,
    "/graphql": build_query_schema,
    "/audit/graphql": build_audit_schema,
}
# Examples per schema and mode: 3 x (80 + 40) = 360 requests in all.
EXAMPLES = {Mode.POSITIVE: 80, Mode.NEGATIVE: 40}

NOW = datetime.now(UTC)
# Each strategy below is half values the service takes, half noise, so that generated commands
# reach the stores as well as the refusals.
date_times = st.one_of(
    st.datetimes(
        min_value=(NOW - timedelta(days=30)).replace(tzinfo=None),
        max_value=(NOW + timedelta(minutes=10)).replace(tzinfo=None),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=2))]),
    ).map(lambda d: d.isoformat()),
    st.one_of(
        st.sampled_from(["now", "2026-02-30T00:00Z", "2026-01-01T00:00+25:00", "2026-01-01T12:00"]),
        st.text(max_size=30),
    ),
).map(nodes.String)
# IDs and strings alike (GraphQL's own scalars, drawn from here in place of hypothesis-graphql's).
texts = st.one_of(
    st.sampled_from(["c-1", "c-2", "e-1", "e-2", "page_view", "purchase", "web", "high-intent"]),
    st.text(max_size=12),
).map(nodes.String)
longs = st.one_of(
    st.integers(min_value=-10, max_value=10_000),
    st.integers(min_value=-(2**70), max_value=2**70),
).map(nodes.Int)

# JSON inputs: rules, definitions, traits, properties. Known shapes reach deeper than noise.
names = st.one_of(
    st.sampled_from(["email", "firstName", "country", "category", "value", "_type_", "event"]),
    st.from_regex(r"[_A-Za-z][_0-9A-Za-z]{0,8}", fullmatch=True),
)
plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=10,
)
KNOWN = [
    {"event": {"type": "page_view", "within": "PT10M", "atLeast": 2}},
    {
        "all": [
            {"trait": {"name": "country", "op": "eq", "value": "DE"}},
            {"score": {"op": "gte", "value": 1}},
        ]
    },
    {
        "any": [
            {"consent": {"purpose": "EMAIL"}},
            {"not": {"event": {"where": {"category": "shoes"}}}},
        ]
    },
    {"email": "a@b.example", "country": "de", "firstName": "Ada", "loyaltyTier": None},
    {"productId": "sku-1", "category": "shoes", "value": 49.9, "currency": "EUR"},
]
json_values = st.one_of(st.sampled_from(KNOWN), plain.filter(lambda v: v is not None))


def literal(value: Any) -> graphql.ValueNode:
    """A JSON value as a GraphQL literal."""
    if value is None:
        return graphql.NullValueNode()
    if isinstance(value, bool):
        return nodes.Boolean(value)
    if isinstance(value, int):
        return nodes.Int(value)
    if isinstance(value, float):
        return nodes.Float(value)
    if isinstance(value, str):
        return nodes.String(value)
    if isinstance(value, list):
        return nodes.List([literal(v) for v in value])
    fields = [
        graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=literal(v))
        for k, v in value.items()
    ]
    return nodes.Object(fields)


CUSTOM_SCALARS = {
    "DateTime": date_times,
    "Long": longs,
    "JSON": json_values.map(literal),
    "ID": texts,
    "String": texts,
}


@pytest.fixture
def fuzzed(settings: Settings, start_service: Callable[..., Service]) -> Service:
    # A read-your-writes wait of a generated minPosition ends soon.
    return start_service(with_settings(settings, min_position_timeout=0.05))


# Hypothesis checks that generation leaves the global random state alone; the service's own
# threads (the projector, the store clients' retries) draw from it meanwhile.
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module:hypothesis.errors.HypothesisDeprecationWarning"
)
@pytest.mark.parametrize("mode", [Mode.POSITIVE, Mode.NEGATIVE], ids=["valid", "violating"])
@pytest.mark.parametrize("path", list(SCHEMAS))
def test_generated_operations_get_no_5xx_and_a_contract_code_on_every_error(
    fuzzed: Service, path: str, mode: Mode
) -> None:
    schema = SCHEMAS[path]()._schema
    roots = [t for t in (schema.query_type, schema.mutation_type) if t is not None]
    # A violation needs an argument to violate: the command side's lone query field has none.
    fields = [n for t in roots for n, f in t.fields.items() if f.args or mode is Mode.POSITIVE]

    @examples(
        max_examples=EXAMPLES[mode],
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(query=from_schema(schema, fields=fields, custom_scalars=CUSTOM_SCALARS, mode=mode))
    def answered_with_a_code(query: str) -> None:
        response = fuzzed.client.post(path, json={"query": query})
        assert response.status_code < 500, (query, response.text)
        assert response.headers["content-type"] == "application/json", (query, response.text)
        body = response.json()
        for error in body.get("errors") or ():
            assert error.get("extensions", {}).get("code") in CODES, (query, json.dumps(error))
        if mode is Mode.NEGATIVE:
            assert body.get("errors"), (query, body)

    answered_with_a_code()


def test_the_literal_encoder_round_trips_json() -> None:
    value = {"a": [1, 2.5, "x\u0000", None, True], "b": {"c": -3}}
    printed = graphql.print_ast(literal(value))
    assert graphql.value_from_ast_untyped(graphql.parse_value(printed)) == value
