"""`projections` tells a stale read model from a live one: the projector reports a heartbeat
every pass, and a model whose projector has gone quiet for longer than the bound is `stalled`,
with the last position and lag it reported."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from adapters.embedded import EmbeddedServer, start_valkey
from adapters.settings import Settings
from adapters.store_config import build_application
from adapters.telemetry import setup_telemetry
from adapters.wakeup import PostgresWakeup
from api.bootstrap import build_projector
from domain.application import utc_now
from domain.normalise import format_utc
from projections.ops import Op
from projections.profile import ProfileKeys, ProfileReadModel
from projections.runner import Projector
from tests.fakes import FakeClock
from tests.integration.conftest import Service
from tests.integration.rebuilds import history, wait_for
from tests.integration.test_projection_invariants import run_commands

STATUS = "{ projections { name position headPosition lag state updatedAt } }"


def statuses(service: Service) -> dict[str, dict[str, Any]]:
    body = service.query(STATUS)
    assert "errors" not in body, body
    return {s["name"]: s for s in body["data"]["projections"]}


def more_events(settings: Settings, count: int) -> int:
    """`count` more commands' events; the new head."""
    app = build_application(settings, utc_now)
    try:
        run_commands(app, seed=5, count=count)
        return app.recorder.max_notification_id() or 0
    finally:
        app.close()


def test_a_projector_gone_quiet_reads_stalled_with_the_last_position_and_lag(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    clock = FakeClock(datetime.now(UTC))
    service = start_service(settings, clock=clock, project=False)  # the default bound: 5 s
    head = history(settings, 3, 200)
    projector, reader, wakeup = build_projector(settings, setup_telemetry(settings), clock)
    try:
        projector.catch_up(until=head // 2)  # then it dies
    finally:
        wakeup.close()
        reader.close()
    reported = statuses(service)["profile"]
    assert reported == {
        "name": "profile",
        "position": head // 2,
        "headPosition": head,
        "lag": head - head // 2,
        "state": "live",
        "updatedAt": format_utc(clock()),
    }
    assert more_events(settings, 300) > head  # the store moves on; nobody tells the query side
    clock.advance(seconds=5)
    assert statuses(service)["profile"]["state"] == "live"  # at the bound, not past it
    clock.advance(seconds=0.1)
    for status in statuses(service).values():
        assert status["state"] == "stalled", status
    assert statuses(service)["profile"] == {**reported, "state": "stalled"}


class FailsPast:
    """The profile read model until a page goes past `position`; then it raises on every
    try, as a page that this code cannot project would."""

    def __init__(self, model: ProfileReadModel, position: int) -> None:
        self.model, self.position, self.tries = model, position, 0
        self.name, self.version, self.schema = model.name, model.version, model.schema
        self.tracking_key, self.key_patterns = model.tracking_key, model.key_patterns

    def page_changes(self, events: Sequence[tuple[int, object]]) -> list[Op]:
        if events[-1][0] > self.position:
            self.tries += 1
            raise ValueError("a page this code cannot project")
        return self.model.page_changes(events)


def test_a_projector_failing_a_page_keeps_reporting_the_head_so_the_lag_grows(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    clock = FakeClock(datetime.now(UTC))
    service = start_service(settings, clock=clock, project=False)
    first = history(settings, 4, 100)
    client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)
    reader = build_application(settings, utc_now, cache=False)
    model = FailsPast(ProfileReadModel(ProfileKeys(settings.redis_namespace)), first)
    projector = Projector(reader.recorder, reader.mapper, client, [model], clock=clock)
    wakeup = PostgresWakeup(str(settings.database_url))
    stop = threading.Event()
    running = threading.Thread(target=projector.run, args=(stop, wakeup, 0.05))
    running.start()
    try:
        wait_for(lambda: statuses(service)["profile"]["position"] == first)
        later = more_events(settings, 100)
        wait_for(lambda: model.tries >= 2)
        wait_for(lambda: statuses(service)["profile"]["headPosition"] == later)
        problem = projector.health.problem(5.0)
        assert problem is not None and "ValueError: a page this code cannot project" in problem
        clock.advance(seconds=6)  # no report since the failures began: no stamp moved
        profile = statuses(service)["profile"]
        assert (profile["state"], profile["position"], profile["lag"]) == (
            "stalled",
            first,
            later - first,
        )
    finally:
        stop.set()
        running.join()
        wakeup.close()
        reader.close()
        client.close()


@pytest.fixture
def own_valkey() -> Iterator[tuple[EmbeddedServer, Callable[[], EmbeddedServer]]]:
    """A Valkey of this test's own, and what restarts it empty at the same address."""
    folder = Path(tempfile.mkdtemp(prefix="profiles-valkey-"))
    servers = [start_valkey(folder, persist=False)]

    def restart() -> EmbeddedServer:
        servers[-1].stop()
        port = int(servers[-1].url.rsplit(":", 1)[1])
        servers.append(start_valkey(folder, persist=False, port=port))
        return servers[-1]

    yield servers[0], restart
    servers[-1].stop()
    shutil.rmtree(folder, ignore_errors=True)


def test_valkey_restarted_empty_reads_stalled_until_the_projector_reports_again(
    settings: Settings,
    start_service: Callable[..., Service],
    own_valkey: tuple[EmbeddedServer, Callable[[], EmbeddedServer]],
) -> None:
    valkey, restart = own_valkey
    settings = replace(settings, redis_url=valkey.url)
    service = start_service(settings, project=False)
    head = history(settings, 6, 100)
    projector, reader, wakeup = build_projector(settings, setup_telemetry(settings))
    try:
        projector.catch_up()
        assert statuses(service)["profile"]["state"] == "live"
        assert restart().url == valkey.url
        # The query side's pooled connections died with the server: one read may answer
        # UNAVAILABLE before they are replaced.
        wait_for(lambda: "errors" not in service.query(STATUS))
        emptied = statuses(service)
        for status in emptied.values():
            assert (status["state"], status["position"], status["updatedAt"]) == (
                "stalled",
                0,
                None,
            ), status
        projector.catch_up()  # the projector starts again from 0 and reports
    finally:
        wakeup.close()
        reader.close()
    again = statuses(service)
    assert {s["state"] for s in again.values()} == {"live"}
    assert again["profile"]["position"] == head
