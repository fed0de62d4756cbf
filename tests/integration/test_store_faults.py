"""Postgres faults on the write path, injected through a proxy: each has a defined answer.

A reply lost after the commit answers what was stored (and stores it once); an outage answers
UNAVAILABLE at once and is over for the service as soon as the store is back; a service
started while Postgres is down serves /healthz and says what it awaits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from adapters.embedded import start_postgres
from adapters.migrate import migrate
from adapters.settings import Settings
from bench.pg_proxy import PostgresProxy
from domain.ids import customer_uuid
from tests.integration.conftest import Service, free_port
from tests.integration.queries import RECORD
from tests.integration.test_commands_over_http import code, interaction

GRANT = """mutation($input: ConsentInput!) {
  grantConsent(input: $input) { id version position duplicate }
}"""
HISTORY = "query($id: ID!) { history(customerId: $id) { events { type } } }"


@pytest.fixture
def proxy(settings: Settings) -> Iterator[PostgresProxy]:
    assert settings.database_url is not None
    running = PostgresProxy(settings.database_url)
    yield running
    running.close()


@pytest.fixture
def through(settings: Settings, proxy: PostgresProxy) -> Settings:
    """The service's settings: Postgres through the proxy, a short deadline."""
    return replace(settings, database_url=proxy.url, deadline_seconds=2.0)


def stored_types(settings: Settings, customer: str) -> list[str]:
    """What the store holds for the customer, read directly (not through the proxy)."""
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute(
            "SELECT topic FROM profiles_events WHERE originator_id = %s "
            "ORDER BY originator_version",
            (customer_uuid(customer),),
        ).fetchall()
    return [str(topic).rsplit(".", 1)[-1] for (topic,) in rows]


def consent(**extra: Any) -> dict[str, Any]:
    return {"customerId": "c-1", "purpose": "EMAIL", "source": "signup-form", **extra}


def test_a_reply_lost_after_the_commit_answers_the_stored_write_once(
    settings: Settings,
    through: Settings,
    proxy: PostgresProxy,
    start_service: Callable[..., Service],
) -> None:
    service = start_service(through, "commands", project=False)
    service.command(RECORD, input=interaction("e-1"))
    # The batch's read names the eventId first (is it claimed?), then its write claims it.
    proxy.lose_next_reply(b"grant-after-commit", skip=1)
    body = service.command(GRANT, input=consent(eventId="grant-after-commit"))
    assert proxy.replies_lost == 1  # the fault did happen
    assert "errors" not in body, body
    answer = body["data"]["grantConsent"]
    assert answer["duplicate"] is False, body
    assert stored_types(settings, "c-1").count("ConsentGranted") == 1
    # The client's own retry (as after a timeout) is a duplicate of the same statement.
    again = service.command(GRANT, input=consent(eventId="grant-after-commit"))["data"]
    assert again["grantConsent"] == {**answer, "duplicate": True}
    assert stored_types(settings, "c-1").count("ConsentGranted") == 1


def test_a_reply_lost_without_an_event_id_still_stores_the_statement_once(
    settings: Settings,
    through: Settings,
    proxy: PostgresProxy,
    start_service: Callable[..., Service],
) -> None:
    service = start_service(through, "commands", project=False)
    service.command(RECORD, input=interaction("e-1"))
    # Without an eventId the request's only mark is the customer's stream id, which only its
    # write sends: the customer is in the writer's cache, so the batch reads nothing.
    proxy.lose_next_reply(customer_uuid("c-1").bytes)
    body = service.command(GRANT, input=consent())
    assert proxy.replies_lost == 1
    assert body["data"]["grantConsent"]["duplicate"] is False, body
    assert stored_types(settings, "c-1") == ["Registered", "InteractionRecorded", "ConsentGranted"]


def test_a_read_whose_reply_was_lost_is_read_again(
    settings: Settings,
    through: Settings,
    proxy: PostgresProxy,
    start_service: Callable[..., Service],
) -> None:
    service = start_service(through, "commands", project=False)
    service.command(RECORD, input=interaction("e-1"))
    proxy.lose_next_reply(b"lost-read")  # the batch's read: is this eventId claimed?
    body = service.command(GRANT, input=consent(eventId="lost-read"))
    assert proxy.replies_lost == 1
    assert body["data"]["grantConsent"]["duplicate"] is False, body
    assert stored_types(settings, "c-1").count("ConsentGranted") == 1


def test_commands_answer_unavailable_in_an_outage_and_succeed_once_it_is_over(
    through: Settings, proxy: PostgresProxy, start_service: Callable[..., Service]
) -> None:
    service = start_service(through, project=False)
    assert service.command(RECORD, input=interaction("e-1"))["data"]["recordInteraction"]
    assert service.audit(HISTORY, id="c-1")["data"]["history"]
    proxy.cut()
    down = service.command(RECORD, input=interaction("e-2"))
    assert code(down) == "UNAVAILABLE", down
    assert "outcome" not in down["errors"][0]["extensions"]  # nothing was written, for sure
    assert service.client.get("/readyz").status_code == 503
    time.sleep(4)  # long enough for the pool's own reconnection delay to have grown
    proxy.restore()
    time.sleep(1.0)  # within the service's 2 s target for the first success
    first = service.command(RECORD, input=interaction("e-2"))
    assert first["data"]["recordInteraction"]["duplicate"] is False, first
    # The audit side's pooled connections died in the outage: none of them is handed out.
    for _ in range(6):
        history = service.audit(HISTORY, id="c-1")
        assert len(history["data"]["history"]["events"]) == 3, history
    assert service.client.get("/readyz").status_code == 200


def test_readiness_says_what_commands_find_when_no_new_connection_is_accepted(
    through: Settings, proxy: PostgresProxy, start_service: Callable[..., Service]
) -> None:
    """Connection slots full: the pool's connections still serve, so the service is ready."""
    service = start_service(through, "commands", project=False)
    assert service.command(RECORD, input=interaction("e-1"))["data"]["recordInteraction"]
    proxy.refuse_new()
    ready = service.client.get("/readyz")
    body = service.command(RECORD, input=interaction("e-2"))
    assert body["data"]["recordInteraction"]["duplicate"] is False, body
    assert ready.status_code == 200, ready.json()


def test_a_service_started_while_postgres_is_down_serves_and_says_what_it_awaits(
    through: Settings, proxy: PostgresProxy, start_service: Callable[..., Service]
) -> None:
    proxy.cut()
    service = start_service(through, project=False)
    assert service.client.get("/healthz").status_code == 200
    ready = service.client.get("/readyz")
    assert ready.status_code == 503 and "postgres at" in ready.json()["postgres"], ready.json()
    waiting = service.command(RECORD, input=interaction("e-1"))
    assert code(waiting) == "UNAVAILABLE"
    assert "not reachable yet" in waiting["errors"][0]["message"]
    assert code(service.audit(HISTORY, id="c-1")) == "UNAVAILABLE"
    proxy.restore()
    time.sleep(1.5)  # the retries back off to 1 s at most
    stored = service.command(RECORD, input=interaction("e-1"))
    assert stored["data"]["recordInteraction"]["duplicate"] is False, stored
    assert service.client.get("/readyz").status_code == 200


def claimed(settings: Settings, event_id: str) -> bool:
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute(
            "SELECT 1 FROM profiles_interaction_ids WHERE event_id = %s", (event_id,)
        ).fetchone()
    return row is not None


def send(service: Service, query: str, **variables: Any) -> dict[str, Any]:
    """A command from a client that waits far longer than the deadline: the service must
    answer first."""
    response = service.client.post(
        "/commands/graphql", json={"query": query, "variables": variables}, timeout=15
    )
    body: dict[str, Any] = response.json()
    return body


# EXCLUSIVE is what every writer takes (reads go on, writes wait); ACCESS EXCLUSIVE, the
# default of LOCK TABLE (a migration, a careless VACUUM FULL), stops reads as well.
@pytest.mark.parametrize("mode", ["EXCLUSIVE", "ACCESS EXCLUSIVE"])
def test_a_lock_held_elsewhere_answers_unavailable_and_leaves_nothing_to_commit_later(
    mode: str, settings: Settings, start_service: Callable[..., Service]
) -> None:
    fast = replace(settings, deadline_seconds=2.0)
    service = start_service(fast, "commands", project=False)
    assert service.command(RECORD, input=interaction("e-1"))["data"]["recordInteraction"]
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url) as holder:
        holder.execute(f"LOCK TABLE profiles_events IN {mode} MODE")
        body = send(service, RECORD, input=interaction("e-locked"))
        assert code(body) == "UNAVAILABLE", body
        waiting = holder.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
        assert waiting == (0,)  # the server gave the write up too: nothing waits for the lock
        holder.rollback()
    time.sleep(0.5)
    assert not claimed(settings, "e-locked")
    retried = service.command(RECORD, input=interaction("e-locked"))
    assert retried["data"]["recordInteraction"]["duplicate"] is False, retried


@pytest.fixture
def own_postgres(redis_url: str) -> Iterator[tuple[Settings, Path]]:
    """A Postgres of this test's own (it gets frozen), and where its data lives."""
    folder = Path(tempfile.mkdtemp(prefix="profiles-frozen-"))
    postgres = start_postgres(folder, delete_on_stop=True)
    migrate(postgres.url)
    settings = Settings(
        database_url=postgres.url,
        redis_url=redis_url,
        redis_namespace=f"t{uuid.uuid4().hex[:10]}:",
        deadline_seconds=2.0,
    )
    yield settings, folder / "postgres"
    postgres.stop()
    shutil.rmtree(folder, ignore_errors=True)


def postgres_processes(pgdata: Path) -> list[int]:
    """The postmaster (first line of postmaster.pid) and every process it started."""
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # The field after the parenthesised name is the state, then the parent's pid.
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(stat.parent.name))
    return [postmaster, *children]


def test_a_frozen_postgres_answers_unavailable_by_the_deadline_and_never_commits_later(
    own_postgres: tuple[Settings, Path], start_service: Callable[..., Service]
) -> None:
    settings, pgdata = own_postgres
    service = start_service(settings, "commands", project=False)
    assert service.command(RECORD, input=interaction("e-1"))["data"]["recordInteraction"]
    frozen = postgres_processes(pgdata)
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        body = send(service, RECORD, input=interaction("e-frozen"))
        assert code(body) == "UNAVAILABLE", body
        assert service.client.get("/readyz", timeout=15).status_code == 503
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    time.sleep(1.0)  # the thawed server runs what it had received
    assert not claimed(settings, "e-frozen")
    retried = service.command(RECORD, input=interaction("e-frozen"))
    assert retried["data"]["recordInteraction"]["duplicate"] is False, retried


def test_profiles_serve_starts_while_postgres_is_down_and_serves_once_it_is_back(
    through: Settings, proxy: PostgresProxy
) -> None:
    proxy.cut()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": str(through.database_url),
        "REDIS_URL": str(through.redis_url),
        "PROFILES_REDIS_NAMESPACE": through.redis_namespace,
    }
    command = [sys.executable, "-m", "api.cli", "serve", "--role", "commands"]
    server = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: get(f"{base}/healthz") == 200), "no /healthz"
        assert get(f"{base}/readyz") == 503
        proxy.restore()
        assert wait_for(lambda: get(f"{base}/readyz") == 200), "never ready"
        body = httpx.post(
            f"{base}/commands/graphql",
            json={"query": RECORD, "variables": {"input": interaction("e-1")}},
        ).json()
        assert body["data"]["recordInteraction"]["duplicate"] is False, body
    finally:
        server.terminate()
        _, log = server.communicate(timeout=20)
    assert "waiting for postgres at" in log  # the operator is told what is awaited


def get(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.TransportError:
        return None


def wait_for(condition: Callable[[], bool], attempts: int = 150) -> bool:
    for _ in range(attempts):
        if condition():
            return True
        time.sleep(0.1)
    return False
