"""Scalars of the contract: Long (64-bit, as a JSON number), JSON, DateTime (RFC 3339 with an
offset on input, UTC on output).

Each refuses what it cannot take with a ScalarRefusal, a GraphQLError with the contract's
BAD_USER_INPUT, in a variable and in an inline literal alike. Anything else escaping a scalar
would reach the caller as a defect of ours (INTERNAL), which a typo in a literal is not.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, NewType

import strawberry
from graphql import GraphQLError, IntValueNode, StringValueNode, ValueNode, print_ast
from strawberry.scalars import JSON
from strawberry.schema.config import StrawberryConfig

from domain.errors import InvalidInput
from domain.normalise import format_utc, parse_utc

Long = NewType("Long", int)
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
_SENT = '"2026-05-01T12:00:00Z"'


class ScalarRefusal(GraphQLError):
    """A value a scalar cannot take; the message says what to send instead."""

    def __init__(self, message: str) -> None:
        super().__init__(message, extensions={"code": "BAD_USER_INPUT"})


def parse_datetime(value: object) -> datetime:
    """RFC 3339 with an offset (a naive time names no instant), as an aware UTC datetime."""
    try:
        return parse_utc(value, "DateTime")  # type: ignore[arg-type]
    except InvalidInput as error:
        raise ScalarRefusal(error.message) from None


def parse_long(value: object) -> Long:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ScalarRefusal(f"{value!r} is not a Long; send a whole number such as 42")
    if not LONG_MIN <= value <= LONG_MAX:
        raise ScalarRefusal(f"{value} is outside the 64-bit range of a Long")
    return Long(value)


def _datetime_literal(node: ValueNode, _variables: dict[str, Any] | None = None) -> datetime:
    if not isinstance(node, StringValueNode):
        raise ScalarRefusal(f"{print_ast(node)} is not a DateTime; send a string like {_SENT}")
    return parse_datetime(node.value)


def _long_literal(node: ValueNode, _variables: dict[str, Any] | None = None) -> Long:
    # A Long is sent as a number, never a string, as Int is.
    if not isinstance(node, IntValueNode):
        raise ScalarRefusal(f"{print_ast(node)} is not a Long; send a whole number such as 42")
    return parse_long(int(node.value))


def serialize_datetime(value: datetime) -> str:
    # One spelling everywhere (fields and audit data alike), sortable as text: ...ffffffZ.
    return format_utc(value.astimezone(UTC))


def serialize_stored_time(text: str) -> str:
    """A time as a read model stores it: already in that spelling (`format_utc`'s, 27
    characters), so not parsed again; anything else is parsed and spelled."""
    if len(text) == 27 and text[-1] == "Z":
        return text
    return serialize_datetime(datetime.fromisoformat(text))


SCALARS = StrawberryConfig(
    scalar_map={
        datetime: strawberry.scalar(
            name="DateTime",
            description="RFC 3339 with an offset on input; always UTC (Z) on output",
            serialize=serialize_datetime,
            parse_value=parse_datetime,
            parse_literal=_datetime_literal,
        ),
        Long: strawberry.scalar(
            name="Long",
            description="A 64-bit integer, sent as a JSON number",
            serialize=int,
            parse_value=parse_long,
            parse_literal=_long_literal,
        ),
    }
)


def utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


__all__ = [
    "JSON",
    "SCALARS",
    "Long",
    "ScalarRefusal",
    "parse_datetime",
    "parse_long",
    "serialize_datetime",
    "serialize_stored_time",
    "utc",
]
