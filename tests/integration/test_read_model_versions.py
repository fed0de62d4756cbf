"""The version pointer seen from outside: `projections` reports a rebuild; a projector never
writes a version built with another schema."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import redis

from adapters.settings import Settings
from adapters.store_config import build_application
from api.bootstrap import build_catalog, build_rebuild, read_model_factories
from domain.application import utc_now
from projections.catalog import Catalog, ModelFactory
from projections.rebuild import Rebuild
from projections.runner import Projector
from projections.segment_keys import SegmentKeys
from projections.versions import VersionPointer
from tests.integration.conftest import Service
from tests.integration.rebuilds import history, seed, wait_for

STATUS = "{ projections { name version position state rebuildVersion rebuildPosition } }"


def test_projections_report_a_rebuild_and_the_position_it_reached(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    head = history(settings, 9, 500)
    service = start_service(settings)
    wait_for(lambda: _status(service)["profile"]["position"] == head)
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
    new = {**old, "profile": lambda v, live: replace(old["profile"](v, live), schema=2)}  # type: ignore[type-var]
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


def test_a_rebuild_announces_no_segment_change_again(settings: Settings) -> None:
    client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)
    history(settings, 13, 1_000)
    changes = SegmentKeys(settings.redis_namespace).changes
    reader = build_application(settings, utc_now, cache=False)
    try:
        serving = build_catalog(settings, utc_now, client).serving
        Projector(reader.recorder, reader.mapper, client, serving).catch_up()
    finally:
        reader.close()
    announced = client.xlen(changes)
    assert announced > 0  # the live version announced who joined
    job, close = build_rebuild(replace(settings, rebuild_grace_seconds=0), ["segments"])
    try:
        assert job.run() is not None
    finally:
        close()
    assert client.xlen(changes) == announced
    assert client.exists(f"{settings.redis_namespace}segments:v2:defs")
