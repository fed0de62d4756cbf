"""What the query side knows of the projectors: positions, head and state, all from Redis."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from projections.stream_build import PLAN, applied
from projections.versions import ServingVersions, parse_pointer, pointer_key


@dataclass(frozen=True)
class ModelStatus:
    name: str
    version: int  # the version serving
    position: int
    head: int
    state: str  # live, or rebuilding while another version is built
    rebuild_version: int | None = None
    rebuild_position: int | None = None


@dataclass(frozen=True)
class TrackedModel:
    name: str
    tracking: Callable[[int], str]  # version -> its tracking key


class StatusReader:
    """`client` is a redis.asyncio client with str replies."""

    def __init__(self, client: Any, namespace: str, models: Sequence[TrackedModel]) -> None:
        self._client = client
        self._pointer = pointer_key(namespace)
        self._versions = ServingVersions(namespace)
        self._models = list(models)

    async def all(self) -> list[ModelStatus]:
        fields = await self._client.hgetall(self._pointer)
        versions = [parse_pointer(fields, m.name) for m in self._models]
        async with self._client.pipeline(transaction=True) as pipe:
            for m, v in zip(self._models, versions, strict=True):
                pipe.hgetall(m.tracking(v.serving))
                if v.building:
                    pipe.hgetall(m.tracking(v.building))
                else:
                    pipe.echo("")  # keeps two replies per model
            replies = await pipe.execute()
        out = []
        for i, (m, v) in enumerate(zip(self._models, versions, strict=True)):
            serving, building = replies[2 * i], replies[2 * i + 1]
            position = int(serving.get("position", 0))
            out.append(
                ModelStatus(
                    name=m.name,
                    version=v.serving,
                    position=position,
                    head=max(int(serving.get("head", 0)), position),
                    state="rebuilding" if v.building else "live",
                    rebuild_version=v.building,
                    rebuild_position=_reached(building) if v.building else None,
                )
            )
        return out

    async def lowest_position(self) -> int:
        """The lowest position of the serving versions (read-your-writes waits on it)."""
        names = [m.name for m in self._models]
        while True:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hgetall(self._pointer)
                for m in self._models:
                    pipe.hget(m.tracking(self._versions.serving(m.name)), "position")
                fields, *replies = await pipe.execute()
            if self._versions.confirm(fields, names):
                return min((int(r or 0) for r in replies), default=0)


def _reached(tracking: dict[str, str]) -> int:
    """A version's position; in a rebuild's first pass (stream by stream, `stream_build`),
    which moves no position, the events it has applied, which approach where it will end."""
    position = int(tracking.get("position", 0))
    if position or PLAN not in tracking:
        return position
    return applied(tracking)
