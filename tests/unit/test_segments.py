"""Segment definitions: validated, versioned, retired."""

from __future__ import annotations

import pytest

from domain.errors import InvalidInput, NotFound
from domain.segment import DefineSegment
from tests.fakes import memory_app

VIEWS = {"event": {"type": "product_view", "atLeast": 3, "within": "PT10M"}}


def define(
    rule: object = VIEWS, name: str = "High intent", slug: str = "high-intent"
) -> DefineSegment:
    return DefineSegment.parse({"id": slug, "name": name, "rule": rule}, field="input")


def test_defining_twice_with_a_new_rule_makes_a_new_version() -> None:
    app = memory_app()
    first = app.define_segment(define())
    second = app.define_segment(define({"score": {"op": "gte", "value": 40}}))
    assert (first.id, first.version, second.version) == ("high-intent", 1, 2)
    assert second.position > first.position
    segment = app.segment_at("high-intent")
    assert segment is not None and segment.rule == {"score": {"op": "gte", "value": 40}}


def test_the_same_definition_again_records_nothing() -> None:
    app = memory_app()
    first = app.define_segment(define())
    again = app.define_segment(define())
    assert (again.version, again.position) == (first.version, first.position)


def test_a_bad_rule_is_refused_naming_the_node() -> None:
    with pytest.raises(InvalidInput) as error:
        define({"all": [VIEWS, {"event": {"within": "P7X"}}]})
    assert error.value.field == "input.rule.all[1].event.within"


def test_slugs_are_lowercase_words_joined_by_dashes() -> None:
    with pytest.raises(InvalidInput) as error:
        define(slug="High Intent")
    assert error.value.field == "input.id"


def test_retiring_an_unknown_segment_is_not_found() -> None:
    with pytest.raises(NotFound):
        memory_app().retire_segment("nope")


def test_retired_segment_comes_back_when_defined_again() -> None:
    app = memory_app()
    app.define_segment(define())
    retired = app.retire_segment("high-intent")
    assert app.retire_segment("high-intent").version == retired.version  # no-op
    revived = app.define_segment(define())
    segment = app.segment_at("high-intent")
    assert revived.version == 3 and segment is not None and not segment.retired
