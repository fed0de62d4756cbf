"""Validation and normalisation of what senders put into commands, before it becomes an event.

Events are immutable, so values are stored in one canonical form: otherwise every projection
would have to understand every variant a sender ever used, forever.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TypeAlias, cast

from domain.countries import ISO_3166_ALPHA2
from domain.errors import InvalidInput, ListTooLong
from domain.plain_json import NOT_PLAIN, plain_copy, surely_within, text_problem

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"

SNAKE_CASE = r"[a-z][a-z0-9_]*"

_SEND_TS = "send RFC 3339 like 2026-05-01T12:00:00Z"
_SEND_GENDER = "send male (m, man), female (f, woman) or other (o, x, diverse, non-binary)"
_SEND_PHONE = "send 6-15 digits with an optional leading +, like +49 30 1234567"
_CAMEL_HINT = "a lower-case letter followed by letters and digits, like firstName"
_MAX_TRAITS = 100
_MAX_TEXT = 1_000
# Deep enough for real payloads, shallow enough that walking and encoding never meet
# Python's recursion limit (json.loads alone lets ~1,000 levels through).
_MAX_DEPTH = 32
# The event store's JSONTranscoder turns {"_type_": ..., "_data_": ...} back into objects.
_RESERVED_KEYS = frozenset({"_type_", "_data_"})

_CAMEL_CASE = re.compile(r"[a-z][A-Za-z0-9]*")
_RFC3339 = re.compile(
    r"(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d:\d\d(?:\.\d+)?)([Zz]|[+-]\d\d:\d\d)?", re.A
)
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
_PHONE_NOISE = re.compile(r"[\s\-.()]")
_PHONE = re.compile(r"\+?[0-9]{6,15}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_LOCALE = re.compile(r"([a-z]{2,3})(?:[-_]([a-z]{4}))?(?:[-_]([a-z]{2}|[0-9]{3}))?", re.I | re.A)
_GENDERS = {
    **dict.fromkeys(("m", "male", "man"), "male"),
    **dict.fromkeys(("f", "female", "woman"), "female"),
    **dict.fromkeys(("o", "other", "x", "diverse", "non-binary", "nonbinary"), "other"),
}


def parse_utc(value: str | datetime, field: str) -> datetime:
    """An RFC 3339 string or aware datetime as an aware datetime in UTC."""
    if isinstance(value, datetime):
        dt, shown = value, repr(value.isoformat())
    elif isinstance(value, str):
        shown = repr(value)
        m = _RFC3339.fullmatch(value.strip())
        if m is None:
            raise InvalidInput(field, f"{shown} is not an RFC 3339 date-time; {_SEND_TS}")
        date_part, time_part, offset = m.groups()
        if offset and offset not in "Zz" and (int(offset[1:3]) > 23 or int(offset[4:]) > 59):
            raise InvalidInput(
                field, f"{shown} has the offset {offset}; offsets run from -23:59 to +23:59"
            )
        try:
            dt = datetime.fromisoformat(f"{date_part}T{time_part}{(offset or '').upper()}")
        except ValueError as e:
            raise InvalidInput(
                field, f"{shown} is not a real date-time ({e}); {_SEND_TS}"
            ) from None
    else:
        raise InvalidInput(field, f"must be a string, not {_kind(value)}; {_SEND_TS}")
    if dt.utcoffset() is None:
        raise InvalidInput(field, f"{shown} has no UTC offset; {_SEND_TS}")
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(field, f"{shown} is outside years 1-9999 in UTC; {_SEND_TS}") from None


def format_utc(dt: datetime) -> str:
    """Fixed-width `YYYY-MM-DDTHH:MM:SS.ffffffZ`, so string order is time order."""
    if dt.tzinfo is not UTC:  # stored times are UTC already: projections format millions
        if dt.utcoffset() is None:
            # A caller bug, not bad input: a naive datetime names no instant.
            raise ValueError("format_utc needs an aware datetime")
        dt = dt.astimezone(UTC)
    # isoformat, unlike strftime's %Y on glibc, zero-pads years before 1000; "+00:00" -> "Z".
    return dt.isoformat(timespec="microseconds")[:-6] + "Z"


def normalise_traits(
    raw: object, field: str = "traits", max_bytes: int = 16_384
) -> dict[str, JSONValue]:
    """Checked traits in canonical form; a None value means "remove this trait"."""
    if not isinstance(raw, dict):
        example = '{"email": "a@b.example"}'
        raise InvalidInput(field, f"must be a JSON object such as {example}, not {_kind(raw)}")
    if len(raw) > _MAX_TRAITS:
        raise InvalidInput(field, f"has {len(raw)} traits; at most {_MAX_TRAITS} are accepted")
    out: dict[str, JSONValue] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not key:
            raise InvalidInput(field, f"has the trait name {key!r}; use camelCase like firstName")
        path = f"{field}.{key}"
        if not _CAMEL_CASE.fullmatch(key):
            hint = _camel_case(key) or _CAMEL_HINT
            raise InvalidInput(path, f"{key!r} is not camelCase; use {hint}")
        out[key] = _trait(key, value, path)
    _check_size(out, field, max_bytes)
    return out


def validate_properties(
    raw: object, field: str = "properties", max_bytes: int = 16_384
) -> dict[str, JSONValue]:
    """A copy of free-form event properties, checked to be storable; None counts as {}."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        example = '{"productId": "sku-1"}'
        raise InvalidInput(field, f"must be a JSON object such as {example}, not {_kind(raw)}")
    plain = plain_copy(raw, 0, _MAX_DEPTH, _RESERVED_KEYS)
    out = _copy_object(raw, field, 0) if plain is NOT_PLAIN else cast(dict[str, JSONValue], plain)
    _check_size(out, field, max_bytes)
    return out


# The longest id or name a write accepts; reads refuse longer ones, which cannot exist, before
# they reach a per-id cache (whose bytes are its entries times this).
MAX_ID_LENGTH = 200


def validate_name(
    value: object, field: str, *, pattern: str | None = None, max_len: int = MAX_ID_LENGTH
) -> str:
    """An id or name such as eventId, customerId, type or source, without outer whitespace."""
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a string, not {_kind(value)}")
    name = value.strip()
    if not name:
        raise InvalidInput(field, "must not be empty")
    check_text(name, field, max_len)
    if pattern is not None and re.fullmatch(pattern, name) is None:
        if pattern == SNAKE_CASE:
            raise InvalidInput(field, f"{name!r} is not snake_case (like {_snake_case(name)})")
        raise InvalidInput(field, f"{name!r} does not match the pattern {pattern}")
    return name


def _calendar_date(v: str) -> str | None:
    text = v.strip()
    try:
        return date.fromisoformat(text).isoformat() if _DATE.fullmatch(text) else None
    except ValueError:  # e.g. 2026-02-30
        return None


def _country(v: str) -> str | None:
    code = v.strip().upper()
    code = "GB" if code == "UK" else code  # only "exceptionally reserved" by ISO, yet common
    return code if code in ISO_3166_ALPHA2 else None


def _locale(v: str) -> str | None:
    m = _LOCALE.fullmatch(v.strip())
    if m is None:
        return None
    lang, script, region = m.groups()
    return "-".join(
        p for p in (lang.lower(), script and script.title(), region and region.upper()) if p
    )


# Known trait -> (canonical form, or None if refused; what the refusal says after the value).
_KNOWN: dict[str, tuple[Callable[[str], str | None], str]] = {
    "email": (
        lambda v: e if _EMAIL.fullmatch(e := v.strip().lower()) else None,
        "is not an email address; send one like a@b.example",
    ),
    "gender": (
        lambda v: _GENDERS.get(v.strip().lower()),
        f"is not an accepted gender; {_SEND_GENDER}",
    ),
    "country": (_country, "is not an ISO 3166-1 alpha-2 country code (e.g. DE, US, GB)"),
    "phone": (
        lambda v: p if _PHONE.fullmatch(p := _PHONE_NOISE.sub("", v)) else None,
        f"is not a phone number; {_SEND_PHONE}",
    ),
    "birthDate": (_calendar_date, "is not a calendar date; send YYYY-MM-DD like 1990-04-23"),
    "locale": (_locale, "is not a locale; send language[-REGION] like de-DE or en"),
    **dict.fromkeys(
        ("firstName", "lastName", "loyaltyTier"),
        (lambda v: v.strip() or None, "is blank; send some text, or null to remove the trait"),
    ),
}


def _trait(key: str, value: object, path: str) -> JSONValue:
    if value is None:
        return None
    if key in _KNOWN:
        if not isinstance(value, str):
            raise InvalidInput(path, f"must be a string (or null to remove it), not {_kind(value)}")
        check_text(value, path, _MAX_TEXT)
        normalise, refusal = _KNOWN[key]
        normalised = normalise(value)
        if normalised is None:
            raise InvalidInput(path, f"{value!r} {refusal}")
        return normalised
    if isinstance(value, dict):
        raise InvalidInput(path, "nested objects are not traits; flatten to keys like addressCity")
    if isinstance(value, list):
        items: list[JSONValue] = []
        for i, item in enumerate(value):
            if item is None or isinstance(item, list | dict):
                only = "lists hold only strings, numbers and booleans"
                raise InvalidInput(f"{path}[{i}]", f"{only}, not {_kind(item)}")
            items.append(_scalar(item, f"{path}[{i}]"))
        return items
    return _scalar(value, path)


def _scalar(value: object, path: str) -> JSONValue:
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return _check_finite(value, path)
    if isinstance(value, str):
        check_text(value, path, _MAX_TEXT)
        m = _RFC3339.fullmatch(value)
        # Only strings shaped like a timestamp are parsed, so ordinary text is left alone.
        return format_utc(parse_utc(value, path)) if m and m.group(3) else value
    raise InvalidInput(path, f"must be a string, number, boolean, list or null, not {_kind(value)}")


def storable_json(value: object, field: str, max_depth: int = _MAX_DEPTH) -> JSONValue:
    """A JSON document (a segment rule, say) kept as sent: checked to be storable as it is."""
    plain = plain_copy(value, 0, max_depth, _RESERVED_KEYS)
    if plain is not NOT_PLAIN:
        return cast(JSONValue, plain)
    return _copy_value(value, field, 0, max_depth)


def _copy_object(
    value: dict[object, object], path: str, depth: int, max_depth: int = _MAX_DEPTH
) -> dict[str, JSONValue]:
    if depth > max_depth:
        raise InvalidInput(path, f"nests deeper than {max_depth} levels; flatten it")
    out: dict[str, JSONValue] = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise InvalidInput(path, f"has the key {k!r}; JSON object keys must be strings")
        if k in _RESERVED_KEYS:
            why = "is reserved by the event store's JSON transcoder"
            raise InvalidInput(
                f"{path}.{k}", f"the key {k!r} {why}; rename it, e.g. to {k[1:-1]!r}"
            )
        check_text(k, f"{path}.{k!r}")  # repr keeps the path printable
        out[k] = _copy_value(v, f"{path}.{k}", depth + 1, max_depth)
    return out


def _copy_value(value: object, path: str, depth: int, max_depth: int = _MAX_DEPTH) -> JSONValue:
    if isinstance(value, str):
        check_text(value, path)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return _check_finite(value, path)
    if isinstance(value, dict):
        return _copy_object(value, path, depth, max_depth)
    if isinstance(value, list):
        if depth > max_depth:
            raise InvalidInput(path, f"nests deeper than {max_depth} levels; flatten it")
        return [_copy_value(v, f"{path}[{i}]", depth + 1, max_depth) for i, v in enumerate(value)]
    json_types = "an object, list, string, number, boolean or null"
    raise InvalidInput(path, f"must be {json_types}, not {_kind(value)}")


def _check_finite(value: float, path: str) -> float:
    if not math.isfinite(value):
        raise InvalidInput(path, f"{value} has no JSON form; send a finite number like 1.5")
    return value


def check_count(count: int, field: str, most: int, noun: str) -> None:
    """A list argument of `count` entries, at most `most` accepted per call."""
    if count > most:
        raise ListTooLong(field, f"has {count} {noun}; send at most {most} per call")


def check_page(first: int, most: int, field: str = "first") -> None:
    """A page size of 1 to `most`."""
    if not 0 < first <= most:
        error = ListTooLong if first > most else InvalidInput
        raise error(field, f"is {first}; send 1 to {most}")


def check_id(value: str, path: str) -> None:
    """An id a read is asked for: text a store can hold, no longer than any write accepts."""
    check_text(value, path, MAX_ID_LENGTH)


def check_text(value: str, path: str, max_len: int | None = None) -> None:
    """Text a store can hold (no NUL, no lone surrogate), at most `max_len` characters."""
    if max_len is not None and len(value) > max_len:
        raise InvalidInput(path, f"is {len(value)} characters; at most {max_len} are accepted")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidInput(path, problem)


def _check_size(value: dict[str, JSONValue], field: str, max_bytes: int) -> None:
    if surely_within(value, max_bytes):
        return
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > max_bytes:
        raise InvalidInput(field, f"is {size} bytes; the limit is {max_bytes}")


def _camel_case(key: str) -> str | None:
    words = [w.lower() if w.isupper() else w for w in re.split(r"[^A-Za-z0-9]+", key) if w]
    if not words:
        return None
    hint = words[0][:1].lower() + words[0][1:] + "".join(w[:1].upper() + w[1:] for w in words[1:])
    return repr(hint) if _CAMEL_CASE.fullmatch(hint) else None


def _snake_case(name: str) -> str:
    hint = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    hint = re.sub(r"[^A-Za-z0-9]+", "_", hint).strip("_").lower()
    return hint if re.fullmatch(SNAKE_CASE, hint) else "page_view"


_KINDS = {type(None): "null", bool: "a boolean", int: "a number", float: "a number",
          str: "a string", list: "a list", dict: "an object"}  # fmt: skip


def _kind(value: object) -> str:
    return _KINDS.get(type(value), f"a {type(value).__name__}")
