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
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from adapters.settings import Settings
from adapters.store_config import build_application
from adapters.telemetry import setup_telemetry
from api.bootstrap import build_catalog, build_rebuild, read_model_factories, start_projector
from domain.application import ProfileApplication, utc_now
from domain.commands import ChangeConsent, Command, RecordInteraction
from domain.segment import DefineSegment
from projections.catalog import Catalog, ModelFactory
from projections.profile_queries import ProfileQueries
from projections.rebuild import Progress, Rebuild
from projections.runner import Projector
from projections.segment_queries import SegmentQueries
from projections.versions import VersionPointer
from tests.integration.conftest import Service
from tests.integration.readmodels import by_version, dump, rebuild
from tests.integration.test_projection_invariants import erased_streams, run_commands

ALL = ["profile", "score", "segments"]
SEGMENTS = {
    "viewers": {"event": {"type": "page_view", "atLeast": 2, "within": "P30D"}},
    "buyers": {"all": [{"event": {"type": "purchase"}}, {"score": {"op": "gte", "value": 5}}]},
}


def fixed_clock() -> Callable[[], datetime]:
    # Membership and due times depend on the clock: both builds must judge at one instant.
    now = datetime.now(UTC) + timedelta(hours=1)
    return lambda: now


def seed(app: ProfileApplication, customers: int) -> None:
    now = datetime.now(UTC)
    for segment_id, rule in SEGMENTS.items():
        raw = {"id": segment_id, "name": segment_id.title(), "rule": rule}
        app.define_segment(DefineSegment.parse(raw, field="input"))
    consent: list[list[Command]] = [
        [
            ChangeConsent.parse(
                {"customerId": f"c-{c}", "purpose": "PERSONALIZATION", "source": "form"},
                granted=True,
                now=now,
                field="input",
            )
        ]
        for c in range(customers)
    ]
    app.execute(consent)


def history(settings: Settings, seed_value: int, commands: int) -> int:
    """Segments, 40 consenting customers and random commands (erasures included); the head."""
    app = build_application(settings, utc_now)
    try:
        seed(app, 40)
        run_commands(app, seed=seed_value, count=commands)
        return app.recorder.max_notification_id() or 0
    finally:
        app.close()


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
        _wait(lambda: live.projector.status["profile"].position > 0)
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
        live.projector.catch_up(until=head)
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
    ids = [f"c-{c}" for c in range(40)]
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


def _wait(check: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_a_killed_rebuild_resumes_and_equals_a_clean_build(settings: Settings) -> None:
    client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)
    head = history(settings, 5, 4_000)
    env = {
        **os.environ,
        "DATABASE_URL": str(settings.database_url),
        "REDIS_URL": str(settings.redis_url),
        "PROFILES_REDIS_NAMESPACE": settings.redis_namespace,
        "PROFILES_REBUILD_BATCH": "50",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "rebuild", "profile", "score"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    tracking = f"{settings.redis_namespace}projection:profile:v2"
    try:
        _wait(lambda: int(client.hget(tracking, "position") or 0) > head // 3)
    finally:
        worker.send_signal(signal.SIGKILL)
        output = worker.communicate()[0].decode()
    reached = min(
        int(client.hget(f"{settings.redis_namespace}projection:{name}:v2", "position") or 0)
        for name in ("profile", "score")
    )
    assert 0 < reached < head, output  # killed half way
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
    assert progress[0].start == reached  # resumed, not restarted
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


STATUS = "{ projections { name version position state rebuildVersion rebuildPosition } }"


def test_projections_report_a_rebuild_and_the_position_it_reached(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    head = history(settings, 9, 500)
    service = start_service(settings)
    _wait(lambda: _status(service)["profile"]["position"] == head)
    client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)
    catalog = build_catalog(settings, utc_now, client)
    assert catalog.pointer.begin(["profile"]) == {"profile": 2}
    half = head // 2
    reader = build_application(settings, utc_now, cache=False)
    try:
        model = catalog.at("profile", 2)
        Projector(reader.recorder, reader.mapper, client, [model]).catch_up(until=half)
    finally:
        reader.close()
    status = _status(service)
    assert status["profile"] == {
        "name": "profile",
        "version": 1,
        "position": head,
        "state": "rebuilding",
        "rebuildVersion": 2,
        "rebuildPosition": half,
    }
    assert status["score"]["state"] == "live" and status["score"]["rebuildVersion"] is None

    job, close = build_rebuild(replace(settings, rebuild_grace_seconds=0), ["profile"])
    try:
        result = job.run()
    finally:
        close()
    assert result is not None and result.events == head - half  # took up where it was left
    after = _status(service)["profile"]
    assert (after["version"], after["state"], after["position"]) == (2, "live", head)


def _status(service: Service) -> dict[str, dict[str, Any]]:
    body = service.query(STATUS)
    assert "errors" not in body, body
    return {s["name"]: s for s in body["data"]["projections"]}


def test_a_projector_never_writes_a_version_built_with_another_schema(
    settings: Settings,
) -> None:
    client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)
    app = build_application(settings, utc_now)
    reader = build_application(settings, utc_now, cache=False)
    old = read_model_factories(settings, utc_now, client)
    new = {**old, "profile": lambda v: replace(old["profile"](v), schema=2)}  # type: ignore[type-var]
    pointer = VersionPointer(client, settings.redis_namespace)

    def projector(factories: dict[str, ModelFactory]) -> Projector:
        serving = Catalog(factories, pointer).serving
        return Projector(reader.recorder, reader.mapper, client, serving)

    def profile_position(version: int) -> int:
        key = f"{settings.redis_namespace}projection:profile:v{version}"
        return int(client.hget(key, "position") or 0)

    try:
        seed(app, 10)
        projector(old).catch_up()
        rebuild_job = Rebuild(
            reader.recorder,
            reader.mapper,
            client,
            Catalog(new, pointer),
            ["profile"],
            grace_seconds=0,
        )
        assert rebuild_job.run() is not None  # the new code built v2 with schema 2
        built = profile_position(2)
        seed(app, 20)  # more events: customers c-10 .. c-19
        head = app.recorder.max_notification_id() or 0
        projector(old).catch_up()  # old code: leaves the schema-2 version alone
        assert profile_position(2) == built < head
        projector(new).catch_up()
        assert profile_position(2) == head
    finally:
        app.close()
        reader.close()
