"""Scalars of the contract: Long (64-bit, as a JSON number), JSON, DateTime (UTC on output)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NewType

import strawberry
from strawberry.scalars import JSON

Long = strawberry.scalar(
    NewType("Long", int),
    name="Long",
    description="A 64-bit integer, sent as a JSON number",
    serialize=int,
    parse_value=int,
)


def utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


__all__ = ["JSON", "Long", "utc"]
