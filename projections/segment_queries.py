"""Reads of the segment read model for the query side: definitions, sizes, member pages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from projections.segment_state import Definition
from projections.segments import SegmentKeys


@dataclass(frozen=True)
class MemberPage:
    customer_ids: tuple[str, ...]
    end_cursor: str | None
    has_next_page: bool


class SegmentQueries:
    """`client` is a redis.asyncio client with str replies."""

    def __init__(self, client: Any, keys: SegmentKeys) -> None:
        self._client = client
        self._keys = keys

    async def all(self) -> list[tuple[Definition, int]]:
        """Live segments with their sizes, by id."""
        stored = await self._client.hgetall(self._keys.definitions)
        definitions = sorted(
            (d for d in map(Definition.from_json, stored.values()) if not d.retired),
            key=lambda d: d.segment_id,
        )
        async with self._client.pipeline(transaction=False) as pipe:
            for d in definitions:
                pipe.zcard(self._keys.members(d.segment_id))
            sizes = await pipe.execute()
        return list(zip(definitions, sizes, strict=True))

    async def get(self, segment_id: str) -> tuple[Definition, int] | None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hget(self._keys.definitions, segment_id)
            pipe.zcard(self._keys.members(segment_id))
            raw, size = await pipe.execute()
        if raw is None:
            return None
        definition = Definition.from_json(raw)
        return None if definition.retired else (definition, size)

    async def members(self, segment_id: str, first: int, after: str | None) -> MemberPage:
        # Members sort by customer id, so the last id of a page is the cursor of the next.
        start = f"({after}" if after else "-"
        ids = await self._client.zrangebylex(
            self._keys.members(segment_id), start, "+", start=0, num=first + 1
        )
        page = tuple(ids[:first])
        return MemberPage(page, page[-1] if page else None, len(ids) > first)
