"""Scalars of the contract: Long (64-bit, as a JSON number), JSON, DateTime (UTC on output)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NewType

import strawberry
from strawberry.scalars import JSON
from strawberry.schema.config import StrawberryConfig

from domain.normalise import format_utc

Long = NewType("Long", int)


def _serialize_datetime(value: datetime) -> str:
    # One spelling everywhere (fields and audit data alike), sortable as text: ...ffffffZ.
    return format_utc(value.astimezone(UTC))


SCALARS = StrawberryConfig(
    scalar_map={
        datetime: strawberry.scalar(
            name="DateTime",
            description="RFC 3339 with an offset on input; always UTC (Z) on output",
            serialize=_serialize_datetime,
            parse_value=datetime.fromisoformat,
        ),
        Long: strawberry.scalar(
            name="Long",
            description="A 64-bit integer, sent as a JSON number",
            serialize=int,
            parse_value=int,
        ),
    }
)


def utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


__all__ = ["JSON", "SCALARS", "Long", "utc"]
