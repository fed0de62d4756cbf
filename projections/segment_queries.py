"""Reads of the segment read model for the query side: definitions, sizes, member pages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from projections.segment_keys import NAME, SegmentKeys
from projections.segment_state import Definition
from projections.versions import ServingVersions


@dataclass(frozen=True)
class MemberPage:
    customer_ids: tuple[str, ...]
    end_cursor: str | None
    has_next_page: bool


class SegmentQueries:
    """`client` is a redis.asyncio client with str replies. Each read is one MULTI that also
    reads the version pointer (see ProfileQueries), repeated once after a switch."""

    def __init__(self, client: Any, namespace: str) -> None:
        self._client = client
        self._namespace = namespace
        self._versions = ServingVersions(namespace)

    async def _read(self, commands: Callable[[Any, SegmentKeys], None]) -> list[Any]:
        """Runs `commands` (queued on a pipeline, given the serving keys) in one MULTI."""
        while True:
            keys = SegmentKeys(self._namespace, self._versions.serving(NAME))
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hgetall(self._versions.key)
                commands(pipe, keys)
                pointer, *replies = await pipe.execute()
            if self._versions.confirm(pointer, [NAME]):
                return list(replies)

    async def all(self) -> list[tuple[Definition, int]]:
        """Live segments with their sizes, by id."""
        (stored,) = await self._read(lambda pipe, keys: pipe.hgetall(keys.definitions))
        definitions = sorted(
            (d for d in map(Definition.from_json, stored.values()) if not d.retired),
            key=lambda d: d.segment_id,
        )

        def sizes(pipe: Any, keys: SegmentKeys) -> None:
            for d in definitions:
                pipe.zcard(keys.members(d.segment_id))

        # Sizes are read a moment after the definitions: a segment defined in between has none.
        return list(zip(definitions, await self._read(sizes), strict=True))

    async def get(self, segment_id: str) -> tuple[Definition, int] | None:
        def read(pipe: Any, keys: SegmentKeys) -> None:
            pipe.hget(keys.definitions, segment_id)
            pipe.zcard(keys.members(segment_id))

        raw, size = await self._read(read)
        if raw is None:
            return None
        definition = Definition.from_json(raw)
        return None if definition.retired else (definition, size)

    async def members(self, segment_id: str, first: int, after: str | None) -> MemberPage:
        # Members sort by customer id, so the last id of a page is the cursor of the next.
        start = f"({after}" if after else "-"
        (ids,) = await self._read(
            lambda pipe, keys: pipe.zrangebylex(
                keys.members(segment_id), start, "+", start=0, num=first + 1
            )
        )
        page = tuple(ids[:first])
        return MemberPage(page, page[-1] if page else None, len(ids) > first)
