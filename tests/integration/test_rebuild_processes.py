"""A rebuild of every read model split over processes (`api.rebuild_workers`) ends equal to a
clean build in one process, and a worker's models resume from their own positions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import redis

from adapters.settings import Settings
from api.bootstrap import build_rebuild
from api.rebuild_workers import groups
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
    assert len(groups(ALL)) == 2  # so this really ran in two worker processes
    fast = replace(settings, rebuild_batch=200, rebuild_grace_seconds=0, rebuild_processes=2)
    job, close = build_rebuild(fast, ALL, clock=clock)
    try:
        result = job.run()
    finally:
        close()
    assert result is not None and result.versions == dict.fromkeys(ALL, 2)
    assert result.events == head
    served = dump(client, settings.redis_namespace)
    clean_ns = f"clean{uuid.uuid4().hex[:8]}:"
    rebuild(settings, clean_ns, clock)
    clean = dump(client, clean_ns)
    assert sum(1 for k in clean if k.endswith(":recent")) > 20  # a real comparison
    assert by_version(served, schedule=False) == by_version(clean, schedule=False)
