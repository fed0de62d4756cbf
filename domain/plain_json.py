"""Fast paths of normalisation for the common case: values that are plain JSON already.

Kafka ingest and recordInteractions normalise every interaction's properties; walking them
with a path string built per value, then encoding them with the stdlib to measure their size,
cost more than storing the event. These helpers answer "nothing to report" cheaply; whenever
they cannot, the caller takes its slow path, which finds and names what is wrong. So the
results, errors included, are the slow path's.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import cast

import orjson

# What plain_copy returns for a value it cannot vouch for.
NOT_PLAIN = object()


def plain_copy(value: object, depth: int, max_depth: int, reserved: Collection[str]) -> object:
    """A copy of a value made of exact JSON types only (str keys not in `reserved`, finite
    floats, valid Unicode, nested at most `max_depth` deep), or NOT_PLAIN."""
    kind = type(value)
    if kind is str:
        return value if valid_text(cast(str, value)) else NOT_PLAIN
    if value is None or kind is int or kind is bool:
        return value
    if kind is float:
        return value if math.isfinite(cast(float, value)) else NOT_PLAIN
    if depth > max_depth:
        return NOT_PLAIN
    if kind is dict:
        out: dict[str, object] = {}
        for k, v in cast(dict[object, object], value).items():
            if type(k) is not str or k in reserved or not valid_text(k):
                return NOT_PLAIN
            copied = plain_copy(v, depth + 1, max_depth, reserved)
            if copied is NOT_PLAIN:
                return NOT_PLAIN
            out[k] = copied
        return out
    if kind is list:
        items: list[object] = []
        for v in cast(list[object], value):
            copied = plain_copy(v, depth + 1, max_depth, reserved)
            if copied is NOT_PLAIN:
                return NOT_PLAIN
            items.append(copied)
        return items
    return NOT_PLAIN


def valid_text(value: str) -> bool:
    """Storable text: no NUL (Postgres text cannot hold one, and no sender means one), and
    encodable as UTF-8 (json.loads lets a lone surrogate such as "\\ud800" through)."""
    if "\x00" in value:
        return False
    # isascii is a flag lookup: almost all text skips the encode that finds lone surrogates.
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text_problem(value: str) -> str | None:
    """What is wrong with text that is not storable, said so that its sender can fix it."""
    if valid_text(value):
        return None
    if "\x00" in value:
        return "contains the NUL character (\\u0000); remove it"
    return "has an unpaired UTF-16 surrogate; send valid Unicode"


def surely_within(value: object, max_bytes: int) -> bool:
    """True when the stdlib's compact UTF-8 JSON of `value` is certainly at most `max_bytes`.

    orjson writes the same bytes except for some floats (1e-05 as 0.00001, 1e+16 as 1e16: a
    few bytes either way per float, and a float takes at least 4 bytes with its separator),
    so half the limit in orjson is within the limit for certain. False means "measure".
    """
    try:
        return 2 * len(orjson.dumps(value)) <= max_bytes
    except TypeError:  # orjson.JSONEncodeError too: e.g. an int beyond 64 bits
        return False
