"""A rebuild whose stream pass is split over processes (`api.rebuild_workers`) ends equal to a
clean build in store order in one process."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from threading import Event

import redis

from adapters.settings import Settings
from api.bootstrap import build_rebuild
from api.rebuild_workers import share_workers
from projections.stream_build import Plan
from tests.integration.readmodels import by_version, dump, rebuild
from tests.integration.rebuilds import ALL, history


@dataclass(frozen=True)
class FixedClock:
    """One instant for both builds, and picklable, so the rebuild may use its workers."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


def test_rebuild_in_processes_equals_a_clean_build(settings: Settings) -> None:
    clock = FixedClock(datetime.now(UTC) + timedelta(hours=1))
    client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)
    head = history(settings, 9, 3_000)  # erasures included
    fast = replace(settings, rebuild_batch=200, rebuild_grace_seconds=0, rebuild_processes=2)
    workers = share_workers(fast, clock)
    handed: list[list[int]] = []

    def recorded(
        chosen: Plan, versions: Mapping[str, int], indexes: Iterable[int], stop: Event
    ) -> None:
        handed.append(list(indexes))
        workers(chosen, versions, handed[-1], stop)

    job, close = build_rebuild(fast, ALL, clock=clock, shares=recorded)
    try:
        result = job.run()
    finally:
        close()
    assert handed == [[1]]  # share 1 went to a worker process while this one built share 0
    assert result is not None and result.versions == dict.fromkeys(ALL, 2)
    assert result.events == head
    served = dump(client, settings.redis_namespace)
    clean_ns = f"clean{uuid.uuid4().hex[:8]}:"
    rebuild(settings, clean_ns, clock)
    clean = dump(client, clean_ns)
    assert sum(1 for k in clean if k.endswith(":recent")) > 20  # a real comparison
    assert by_version(served, schedule=False) == by_version(clean, schedule=False)
