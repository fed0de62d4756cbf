"""Segment rules are parsed into typed trees; a bad one is refused naming the offending node."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.errors import InvalidInput
from domain.rules import (
    All,
    AnyOf,
    ConsentCondition,
    EventCondition,
    Not,
    ScoreCondition,
    TraitCondition,
    parse_duration,
    parse_rule,
)


def refusal(raw: object) -> InvalidInput:
    with pytest.raises(InvalidInput) as error:
        parse_rule(raw)
    return error.value


def test_the_contracts_examples_parse() -> None:
    rule = parse_rule(
        {
            "all": [
                {
                    "event": {
                        "type": "product_view",
                        "where": {"category": "shoes"},
                        "atLeast": 3,
                        "within": "PT10M",
                    }
                },
                {"not": {"event": {"type": "purchase", "within": "P30D"}}},
                {
                    "any": [
                        {"trait": {"name": "country", "op": "in", "value": ["DE", "AT"]}},
                        {"score": {"op": "gte", "value": 40}},
                    ]
                },
                {"consent": {"purpose": "EMAIL"}},
            ]
        }
    )
    assert isinstance(rule, All)
    views, no_purchase, either, consent = rule.rules
    assert views == EventCondition(
        "product_view", (("category", '"shoes"'),), 3, timedelta(minutes=10)
    )
    assert isinstance(no_purchase, Not) and isinstance(either, AnyOf)
    assert either.rules[0] == TraitCondition("country", "in", ["DE", "AT"])
    assert either.rules[1] == ScoreCondition("gte", 40.0)
    assert isinstance(consent, ConsentCondition)


def test_bad_duration_names_its_node() -> None:
    error = refusal(
        {"all": [{"trait": {"name": "x", "op": "exists"}}, {"event": {"within": "P7X"}}]}
    )
    assert error.field == "rule.all[1].event.within"
    assert (
        str(error)
        == "rule.all[1].event.within: 'P7X' is not an ISO 8601 duration (e.g. PT10M, P7D)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT10M", timedelta(minutes=10)),
        ("P7D", timedelta(days=7)),
        ("P1W", timedelta(weeks=1)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("PT0.5S", timedelta(milliseconds=500)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text, "d") == expected


@pytest.mark.parametrize("text", ["P1M", "P1Y", "", "P", "PT", "10M", "PT0S", 10])
def test_durations_refused(text: object) -> None:
    with pytest.raises(InvalidInput):
        parse_duration(text, "d")


def test_months_are_refused_with_a_hint() -> None:
    with pytest.raises(InvalidInput, match=r"use days, e\.g\. P30D"):
        parse_duration("P1M", "d")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"every": []}, "rule"),
        ({"all": []}, "rule.all"),
        (
            {"all": [{"trait": {"name": "country", "op": "like", "value": "D%"}}]},
            "rule.all[0].trait.op",
        ),
        ({"trait": {"name": "country", "op": "eq"}}, "rule.trait.value"),
        ({"trait": {"name": "country", "op": "in", "value": "DE"}}, "rule.trait.value"),
        ({"score": {"op": "gte", "value": "high"}}, "rule.score.value"),
        ({"consent": {"purpose": "COOKIES"}}, "rule.consent.purpose"),
        ({"event": {"atLeast": 0}}, "rule.event.atLeast"),
        ({"event": {"type": "x", "when": "now"}}, "rule.event.when"),
        ({"not": {"all": [{"any": ["x"]}]}}, "rule.not.all[0].any[0]"),
        ([1], "rule"),
    ],
)
def test_refusals_point_at_the_offending_node(raw: object, field: str) -> None:
    assert refusal(raw).field == field


def test_event_condition_keys_ignore_where_order() -> None:
    a = parse_rule({"event": {"type": "v", "where": {"a": 1, "b": "x"}}})
    b = parse_rule({"event": {"type": "v", "where": {"b": "x", "a": 1}}})
    assert isinstance(a, EventCondition) and isinstance(b, EventCondition) and a.key == b.key
