"""Scalars of the contract: Long (64-bit, as a JSON number), JSON, DateTime (UTC on output)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NewType

import strawberry
from strawberry.scalars import JSON
from strawberry.schema.config import StrawberryConfig

Long = NewType("Long", int)

SCALARS = StrawberryConfig(
    scalar_map={
        Long: strawberry.scalar(
            name="Long",
            description="A 64-bit integer, sent as a JSON number",
            serialize=int,
            parse_value=int,
        )
    }
)


def utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


__all__ = ["JSON", "SCALARS", "Long", "utc"]
