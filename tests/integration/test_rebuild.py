"""Rebuilds: a rebuild builds a new version beside the serving one and switches with no gap;
queries never see a half-built model; a stopped rebuild resumes; erased customers stay out."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import redis
import redis.asyncio as aioredis

from adapters.settings import Settings
from adapters.store_config import build_application
from adapters.telemetry import setup_telemetry
from api.bootstrap import build_rebuild
from api.projector_job import start_projector
from domain.application import utc_now
from domain.commands import Command, RecordInteraction
from projections.profile_queries import CHUNK, ProfileQueries
from projections.rebuild import Progress
from projections.segment_queries import SegmentQueries
from projections.stream_build import Plan
from projections.versions import VersionPointer
from tests.integration.readmodels import by_version, dump, rebuild
from tests.integration.rebuilds import ALL, SEGMENTS, fixed_clock, history, seed, wait_for
from tests.integration.test_projection_invariants import erased_streams, run_commands


def test_rebuild_under_load_switches_with_no_partial_read(settings: Settings) -> None:
    settings = replace(settings, rebuild_batch=300, rebuild_grace_seconds=0.3)
    clock = fixed_clock()
    client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)
    app = build_application(settings, utc_now)
    seed(app, 40)
    run_commands(app, seed=3, count=3_000)  # the customers c-0 .. c-39, erasures included
    live = start_projector(settings, setup_telemetry(settings), clock)
    stop, reads = threading.Event(), [0]
    failures: list[str] = []

    def write() -> None:
        rng, n = random.Random(11), 0
        while not stop.is_set():
            units: list[list[Command]] = []
            for _ in range(20):
                n += 1
                raw = {
                    "eventId": f"w-{n}",
                    "customerId": f"c-{rng.randrange(40)}",
                    "type": rng.choice(["page_view", "purchase"]),
                    "occurredAt": datetime.now(UTC),
                }
                units.append([RecordInteraction.parse(raw, now=datetime.now(UTC), field="i")])
            app.execute(units)  # an erased customer's are refused; the others are stored
            stop.wait(0.02)  # a steady stream, not a flood: the rebuild shares this process

    def read() -> None:
        asyncio.run(_read_until(stop, settings, clock, failures, reads))

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    try:
        wait_for(lambda: live.wait_built().status["profile"].position > 0)
        for t in threads:
            t.start()
        phases: list[str] = []
        job, close = build_rebuild(settings, ALL, lambda p: phases.append(p.phase), clock)
        try:
            result = job.run()
        finally:
            close()
        assert result is not None
        assert result.versions == dict.fromkeys(ALL, 2)
        assert result.replaced == dict.fromkeys(ALL, 1)
        assert {"building", "switching", "dropping", "done"} <= set(phases)
        time.sleep(0.5)  # queries and writes go on across the switch
    finally:
        stop.set()
        for t in threads:
            t.join()
    try:
        head = app.recorder.max_notification_id() or 0
        live.wait_built().catch_up(until=head)
        served = dump(client, settings.redis_namespace)
    finally:
        live.close()
        app.close()
    assert not failures, failures[:3]
    assert reads[0] > 20  # the reader really read across the rebuild
    versions = VersionPointer(client, settings.redis_namespace).read(ALL)
    assert {n: (v.serving, v.building, v.retired) for n, v in versions.items()} == dict.fromkeys(
        ALL, (2, None, None)
    )
    assert not [k for k in served if ":v1:" in k or k.endswith(":v1")]  # the old version is gone
    clean_ns = f"clean{uuid.uuid4().hex[:8]}:"
    rebuild(settings, clean_ns, clock)
    clean = dump(client, clean_ns)
    assert sum(1 for k in clean if k.endswith(":recent")) > 20  # a real comparison
    assert by_version(served, schedule=False) == by_version(clean, schedule=False)


async def _read_until(
    stop: threading.Event,
    settings: Settings,
    clock: Callable[[], datetime],
    failures: list[str],
    reads: list[int],
) -> None:
    """Reads every customer over and over: a profile once seen must stay (or be erased), its
    version never goes back, and the defined segments stay defined."""
    client = aioredis.Redis.from_url(str(settings.redis_url), decode_responses=True)
    profiles = ProfileQueries(client, settings.redis_namespace, settings.score_model, clock)
    segments = SegmentQueries(client, settings.redis_namespace)
    erased = {str(u) for u in erased_streams(settings)}
    seen: dict[str, int] = {}
    # With ids of no one between them, the read spans chunks (CHUNK each), each its own call.
    ids = [i for c in range(40) for i in (f"c-{c}", *(f"nobody-{c}-{k}" for k in range(3)))]
    assert len(ids) > CHUNK
    try:
        while not stop.is_set():
            views = await profiles.get_many(ids)
            for cid, view in zip(ids, views, strict=True):
                if view is None:
                    if cid in seen and not _erased_now(settings, cid, erased):
                        failures.append(f"{cid} vanished after version {seen[cid]}")
                    continue
                if view.version < seen.get(cid, 0):
                    failures.append(f"{cid} went back from {seen[cid]} to {view.version}")
                seen[cid] = view.version
            defined = {d.segment_id for d, _ in await segments.all()}
            if defined != set(SEGMENTS):
                failures.append(f"segments read as {sorted(defined)}")
            reads[0] += 1
            await asyncio.sleep(0.01)
    except Exception as error:  # any failed query is a failure of the test
        failures.append(repr(error))
    finally:
        await client.aclose()


def _erased_now(settings: Settings, customer_id: str, known: set[str]) -> bool:
    from domain.ids import customer_uuid

    uid = str(customer_uuid(customer_id))
    return uid in known or uid in {str(u) for u in erased_streams(settings)}


def test_a_killed_rebuild_resumes_and_equals_a_clean_build(settings: Settings) -> None:
    client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)
    head = history(settings, 5, 4_000)
    env = {
        **os.environ,
        "DATABASE_URL": str(settings.database_url),
        "REDIS_URL": str(settings.redis_url),
        "PROFILES_REDIS_NAMESPACE": settings.redis_namespace,
        "PROFILES_REBUILD_BATCH": "50",
        "PROFILES_REBUILD_PROCESSES": "2",  # a worker process too, killed with its parent
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "rebuild", "profile", "score"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    # The first pass goes stream by stream (`stream_build`): its progress is a cursor per share
    # and a count of the events applied, moved with each page.
    trackings = [f"{settings.redis_namespace}projection:{name}:v2" for name in ("profile", "score")]
    counts = [f"{Plan(head, 2).share(k).field}:events" for k in (0, 1)]

    def applied() -> int:
        return min(sum(int(n or 0) for n in client.hmget(t, counts)) for t in trackings)

    try:
        wait_for(lambda: applied() > head // 3)
    finally:
        worker.send_signal(signal.SIGKILL)
        output = worker.communicate()[0].decode()
    reached = applied()
    assert 0 < reached < head, output  # killed half way
    assert all(client.hget(t, "position") in (None, "0") for t in trackings)  # still in the pass
    pointer = VersionPointer(client, settings.redis_namespace)
    assert pointer.read(["profile"])["profile"].building == 2  # still to finish
    assert "building" in output and "events/s" in output  # plain progress lines, not a tty

    progress: list[Progress] = []
    quick = replace(settings, rebuild_grace_seconds=0)
    job, close = build_rebuild(quick, ["profile", "score"], progress.append)
    try:
        result = job.run()
    finally:
        close()
    assert result is not None and result.versions == {"profile": 2, "score": 2}
    assert progress[0].start == reached and progress[0].position >= reached  # resumed
    assert result.events == head - reached
    clean_ns = f"clean{uuid.uuid4().hex[:8]}:"
    rebuild(settings, clean_ns)
    ours = by_version(dump(client, settings.redis_namespace))
    clean = by_version(dump(client, clean_ns))
    for model in ("profile:", "score:", "projection:profile", "projection:score"):
        mine = {k: v for k, v in ours.items() if k.startswith(model)}
        assert mine, model
        assert mine == {k: v for k, v in clean.items() if k.startswith(model)}


def test_rebuild_over_erased_customers_brings_none_back(settings: Settings) -> None:
    client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)
    history(settings, 7, 2_000)
    erased = [str(u) for u in erased_streams(settings)]
    assert erased, "the random commands should erase someone"
    job, close = build_rebuild(replace(settings, rebuild_grace_seconds=0), ALL)
    try:
        assert job.run() is not None
    finally:
        close()
    stored = dump(client, settings.redis_namespace)
    assert sum(1 for k in stored if k.startswith("profile:v2:")) > 20
    leaks = [k for k, v in stored.items() if any(u in k or u in str(v) for u in erased)]
    assert not leaks
    names = [re.compile(rf"(?<![\w-]){c}(?![\w-])") for c in _customer_ids_of(erased)]
    assert names
    assert not [k for k, v in stored.items() if any(n.search(str(v)) for n in names)]


def _customer_ids_of(streams: list[str]) -> set[str]:
    from domain.ids import customer_uuid

    wanted = set(streams)
    return {f"c-{c}" for c in range(40) if str(customer_uuid(f"c-{c}")) in wanted}


@pytest.mark.parametrize("names", [["nope"], []])
def test_rebuild_refuses_an_unknown_read_model(settings: Settings, names: list[str]) -> None:
    with pytest.raises(LookupError, match="profile, score, segments"):
        build_rebuild(settings, names)
