"""A projector that starts while its stores are down: `profiles project` stays up, answers
/healthz at once and /readyz 503 naming what it awaits, then follows the store once it is
there; so does the projector inside `serve --project`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
import redis

from adapters.embedded import EmbeddedServer, start_postgres, start_valkey
from adapters.migrate import migrate
from adapters.settings import Settings
from tests.integration.conftest import Service, free_port
from tests.integration.rebuilds import history, wait_for

ROOT = Path(__file__).resolve().parents[2]
STATUS = "{ projections { name position headPosition state } }"


@dataclass
class Outage:
    """A Postgres of this test's own with a history, stopped; `restart` brings it back,
    `stop` stops it again."""

    settings: Settings
    head: int
    restart: Callable[[], None]
    stop: Callable[[], None]


@pytest.fixture
def postgres_down() -> Iterator[Outage]:
    folder = Path(tempfile.mkdtemp(prefix="profiles-projector-outage-"))
    servers: list[EmbeddedServer] = [start_postgres(folder)]
    valkey = start_valkey(folder, persist=False)
    migrate(servers[0].url)
    settings = Settings(
        database_url=servers[0].url,
        redis_url=valkey.url,
        projection_poll_seconds=0.2,
        projection_stalled_seconds=1.0,
    )
    head = history(settings, 8, 200)
    servers[0].stop()

    def restart() -> None:
        servers.append(start_postgres(folder))  # the same data, at the same socket
        assert servers[-1].url == settings.database_url

    yield Outage(settings, head, restart, lambda: servers[-1].stop())
    for server in servers:
        server.stop()
    valkey.stop()
    shutil.rmtree(folder, ignore_errors=True)


def position(settings: Settings) -> int:
    client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        return int(client.hget("projection:profile:v1", "position") or 0)
    finally:
        client.close()


def test_profiles_project_waits_for_postgres_then_projects_and_its_death_reads_stalled(
    postgres_down: Outage, start_service: Callable[..., Service], tmp_path: Path
) -> None:
    settings, port = postgres_down.settings, free_port()
    log = tmp_path / "project.log"
    env = {
        **os.environ,
        "DATABASE_URL": str(settings.database_url),
        "REDIS_URL": str(settings.redis_url),
        "PROFILES_PROJECTION_STALLED_SECONDS": "1",
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "api.cli", "project", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    try:

        def answers() -> bool:
            try:
                return http.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(answers)
        waited_from = time.monotonic()
        ready = http.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["projector"].startswith(
            f"waiting for postgres at {settings.database_url.split('host=')[1]}:5432/profiles: "
        ), ready.json()
        time.sleep(2)  # several attempts
        assert process.poll() is None, log.read_text()
        assert http.get("/readyz").status_code == 503
        postgres_down.restart()
        wait_for(lambda: position(settings) == postgres_down.head)
        wait_for(lambda: http.get("/readyz").status_code == 200)
        assert http.get("/readyz").json() == {"status": "ok", "projector": "ok"}
        metrics = http.get("/metrics")
        gauge = [
            line.rsplit(" ", 1)[1]
            for line in metrics.text.splitlines()
            if line.startswith("profiles_projection_position{") and '"profile"' in line
        ]
        assert gauge == [f"{postgres_down.head:.1f}"], metrics.text
        waited = time.monotonic() - waited_from
        postgres_down.stop()  # and while it follows: not ready until Postgres is back
        # "no progress" while a pass is held in the library's connection retries, then what
        # failed it once they give up.
        wait_for(lambda: http.get("/readyz").status_code == 503)
        problem = http.get("/readyz").json()["projector"]
        assert problem.startswith(("no progress for ", "projecting: ")), problem
        postgres_down.restart()
        wait_for(lambda: http.get("/readyz").status_code == 200)
        query = start_service(settings, "query", project=False)
        wait_for(lambda: _states(query) == {"live"})
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        wait_for(lambda: _states(query) == {"stalled"})
    finally:
        http.close()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    lines = log.read_text().splitlines()
    awaited = [line for line in lines if "waiting for postgres at" in line]
    assert awaited and "OperationalError" in awaited[0], lines
    assert len(awaited) <= 1 + waited / 10, lines  # one line per 10 s, not one per attempt
    assert any("answers after" in line for line in lines), lines


def _states(service: Service) -> set[str]:
    body = service.query(STATUS)
    return {s["state"] for s in body["data"]["projections"]} if "data" in body else set()


def test_serve_with_the_projector_starts_while_postgres_is_down_and_projects_once_it_is_back(
    postgres_down: Outage, start_service: Callable[..., Service]
) -> None:
    settings = replace(postgres_down.settings, projection_stalled_seconds=5.0)
    service = start_service(settings, "query", project=True)
    assert service.client.get("/healthz").status_code == 200
    assert _states(service) == {"stalled"}  # nothing has reported yet
    postgres_down.restart()

    def projected() -> bool:
        body = service.query(STATUS)["data"]["projections"]
        return {(s["state"], s["position"]) for s in body} == {("live", postgres_down.head)}

    wait_for(projected)
