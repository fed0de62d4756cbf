"""The fast event encoder and normalisation's fast paths agree with the slow paths they skip."""

from __future__ import annotations

import enum
import json
import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, cast
from uuid import uuid4

import pytest
from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, UUIDAsHex
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.event_json import EventJSON
from domain.normalise import _copy_object, validate_properties
from domain.plain_json import NOT_PLAIN, plain_copy, surely_within

AT = datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)


def transcoder() -> JSONTranscoder:
    coder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DatetimeAsISO(), DecimalAsStr()):
        coder.register(transcoding)
    return coder


scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    scalars | st.datetimes(timezones=st.just(UTC)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_reads_back_as_the_transcoder_own_encoding(state: dict[str, Any]) -> None:
    coder = transcoder()
    fast = EventJSON(coder).encode(state)
    assert coder.decode(fast) == coder.decode(coder.encode(state))


def test_an_interaction_encodes_byte_for_byte_as_the_transcoder_does() -> None:
    coder = transcoder()
    state = {
        "timestamp": AT,
        "event_id": "evt-1",
        "occurred_at": AT - timedelta(seconds=3),
        "properties": {"sku": "SKU-1", "price": 19.99, "tags": ["a", "ü"], "n": None},
        "text": 'quote " backslash \\ newline \n tab \t bell \x07 emoji \U0001f600',
    }
    encoder = EventJSON(coder)
    assert encoder.encode(state) == coder.encode(state)
    assert encoder.encode(state) == coder.encode(state)  # the memoised timestamp too


class Colour(enum.Enum):
    RED = "red"


class Label(enum.StrEnum):
    A = "a"


@pytest.mark.parametrize(
    "value",
    [
        uuid4(),  # orjson would write a bare string; the transcoder tags it
        Decimal("1.5"),
        float("nan"),  # orjson would write null; the stdlib writes NaN
        math.inf,
        2**70,  # beyond orjson's 64 bits
        Label.A,
        datetime(2026, 5, 1, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_values_orjson_would_write_differently_take_the_transcoder(value: object) -> None:
    coder = transcoder()
    state = {"at": AT, "nested": {"value": [value]}}
    assert EventJSON(coder).encode(state) == coder.encode(state)


@pytest.mark.parametrize("value", [Colour.RED, date(2026, 5, 1), {1: "int key"}])
def test_what_the_transcoder_refuses_is_still_refused(value: object) -> None:
    coder = transcoder()
    state = {"nested": value}
    try:
        expected: object = coder.encode(state)
    except Exception as error:  # whatever it raises, the fast path must raise too
        with pytest.raises(type(error)):
            EventJSON(coder).encode(state)
        return
    assert EventJSON(coder).encode(state) == expected


properties = st.dictionaries(
    st.text(max_size=6),
    st.recursive(
        scalars | st.floats(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
        max_leaves=10,
    ),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(properties)
def test_plain_copy_is_the_slow_walk_copy_or_steps_aside(raw: dict[str, Any]) -> None:
    copied = plain_copy(raw, 0, 32, frozenset({"_type_", "_data_"}))
    if copied is not NOT_PLAIN:
        assert copied == _copy_object(cast("dict[object, object]", raw), "p", 0)
        assert copied is not raw


def test_properties_the_fast_path_cannot_vouch_for_get_the_slow_path_error() -> None:
    from domain.errors import InvalidInput

    for raw, field in [
        ({"a": {"_type_": 1}}, "p.a._type_"),
        ({"a": [1.0, math.nan]}, "p.a[1]"),
        ({"a": "\ud800"}, "p.a"),
    ]:
        with pytest.raises(InvalidInput) as caught:
            validate_properties(raw, "p")
        assert caught.value.field == field


@settings(max_examples=500, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.text(), max_size=40))
def test_surely_within_never_admits_what_the_stdlib_measures_over(values: list[Any]) -> None:
    size = len(json.dumps({"v": values}, separators=(",", ":"), ensure_ascii=False).encode())
    for limit in (size - 1, size // 2, size * 2):
        if surely_within({"v": values}, limit):
            assert size <= limit
