"""What the query side knows of the projectors: positions, head and state, all from Redis."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from projections.stream_build import PLAN, applied
from projections.versions import ServingVersions, parse_pointer, pointer_key


@dataclass(frozen=True)
class ModelStatus:
    name: str
    version: int  # the version serving
    position: int
    head: int
    # live; rebuilding while another version is built; stalled when the projector's last
    # report is older than the bound (or there is none): position and head are then its last
    state: str
    updated_at: datetime | None = None  # when its projector last reported
    rebuild_version: int | None = None
    rebuild_position: int | None = None


@dataclass(frozen=True)
class TrackedModel:
    name: str
    tracking: Callable[[int], str]  # version -> its tracking key


class StatusReader:
    """`client` is a redis.asyncio client with str replies."""

    def __init__(
        self,
        client: Any,
        namespace: str,
        models: Sequence[TrackedModel],
        clock: Callable[[], datetime],
        stalled_after: float,
    ) -> None:
        self._client = client
        self._pointer = pointer_key(namespace)
        self._versions = ServingVersions(namespace)
        self._models = list(models)
        self._clock = clock
        self._stalled_after = stalled_after  # seconds without a report

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
        now = self._clock()
        for i, (m, v) in enumerate(zip(self._models, versions, strict=True)):
            serving, building = replies[2 * i], replies[2 * i + 1]
            position = int(serving.get("position", 0))
            updated = _stamp(serving.get("updatedAt"))
            stalled = updated is None or (now - updated).total_seconds() > self._stalled_after
            out.append(
                ModelStatus(
                    name=m.name,
                    version=v.serving,
                    position=position,
                    head=max(int(serving.get("head", 0)), position),
                    # A stalled projector matters more than a rebuild beside it.
                    state="stalled" if stalled else "rebuilding" if v.building else "live",
                    updated_at=updated,
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


def _stamp(raw: str | None) -> datetime | None:
    try:
        stamp = datetime.fromisoformat(raw) if raw else None
    except ValueError:
        return None  # not a stamp this code wrote: no report it can trust
    return stamp if stamp is None or stamp.tzinfo else stamp.replace(tzinfo=UTC)
