"""What the query side knows of the projectors: positions, head and state, all from Redis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelStatus:
    name: str
    version: int
    position: int
    head: int
    state: str


@dataclass(frozen=True)
class TrackedModel:
    name: str
    version: int
    tracking_key: str


class StatusReader:
    """`client` is a redis.asyncio client with str replies."""

    def __init__(self, client: Any, models: Sequence[TrackedModel]) -> None:
        self._client = client
        self._models = list(models)

    async def all(self) -> list[ModelStatus]:
        async with self._client.pipeline(transaction=False) as pipe:
            for m in self._models:
                pipe.hgetall(m.tracking_key)
            replies = await pipe.execute()
        return [
            ModelStatus(
                name=m.name,
                version=m.version,
                position=int(r.get("position", 0)),
                head=max(int(r.get("head", 0)), int(r.get("position", 0))),
                state=r.get("state", "live"),
            )
            for m, r in zip(self._models, replies, strict=True)
        ]

    async def lowest_position(self) -> int:
        async with self._client.pipeline(transaction=False) as pipe:
            for m in self._models:
                pipe.hget(m.tracking_key, "position")
            replies = await pipe.execute()
        return min((int(r or 0) for r in replies), default=0)
