"""UNAVAILABLE and CONFLICT over HTTP, and both consent models end to end."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapters.embedded import start_postgres, start_valkey
from adapters.migrate import migrate
from adapters.settings import Settings
from domain.consent import ConsentModel
from tests.integration.conftest import Service, with_settings
from tests.integration.queries import GRANT, PROFILE, RECORD, WITHDRAW
from tests.integration.test_commands_over_http import code, interaction


@pytest.fixture
def own_servers() -> Iterator[tuple[Settings, Callable[[], None], Callable[[], None]]]:
    """Servers of this test's own, so stopping them harms no other test."""
    folder = Path(tempfile.mkdtemp(prefix="profiles-outage-"))
    postgres = start_postgres(folder, delete_on_stop=True)
    valkey = start_valkey(folder, persist=False)
    migrate(postgres.url)
    settings = Settings(
        database_url=postgres.url, redis_url=valkey.url, projection_poll_seconds=0.2
    )
    yield settings, postgres.stop, valkey.stop
    valkey.stop()
    postgres.stop()
    shutil.rmtree(folder, ignore_errors=True)


def test_commands_answer_unavailable_when_postgres_is_down(
    own_servers: tuple[Settings, Callable[[], None], Callable[[], None]],
    start_service: Callable[..., Service],
) -> None:
    settings, stop_postgres, _ = own_servers
    service = start_service(settings, project=False)
    assert service.command(RECORD, input=interaction("e-1"))["data"]["recordInteraction"]
    assert service.client.get("/readyz").json()["postgres"] == "ok"
    stop_postgres()
    ready = service.client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["postgres"].startswith("unavailable")
    body = service.command(RECORD, input=interaction("e-2"))
    assert code(body) == "UNAVAILABLE", body
    history = service.audit('{ history(customerId: "c-1") { events { type } } }')
    assert code(history) == "UNAVAILABLE", history


def test_queries_answer_unavailable_when_redis_is_down(
    own_servers: tuple[Settings, Callable[[], None], Callable[[], None]],
    start_service: Callable[..., Service],
) -> None:
    settings, _, stop_valkey = own_servers
    service = start_service(settings, project=False)
    stop_valkey()
    body = service.query(PROFILE, id="c-1")
    assert code(body) == "UNAVAILABLE", body


def test_stale_writer_without_retries_gets_conflict_then_recovers(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    stale = start_service(with_settings(settings, command_retries=0), "commands", project=False)
    other = start_service(settings, "commands", project=False)
    stale.command(RECORD, input=interaction("e-1"))  # caches c-1 at version 2
    other.command(RECORD, input=interaction("e-2"))  # c-1 is now at version 3 elsewhere
    body = stale.command(RECORD, input=interaction("e-3"))
    assert code(body) == "CONFLICT", body
    # The conflict evicted the stale copy: the client's retry goes through.
    retried = stale.command(RECORD, input=interaction("e-3"))["data"]["recordInteraction"]
    assert (retried["version"], retried["duplicate"]) == (4, False)


def test_opt_in_suppresses_until_analytics_is_granted(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    service = start_service(with_settings(settings, consent_model=ConsentModel.OPT_IN))
    first = service.command(RECORD, input=interaction("e-1"))["data"]["recordInteraction"]
    assert first["suppressed"] is True and first["position"] == 0
    analytics = {"customerId": "c-1", "purpose": "ANALYTICS", "source": "cookie-banner"}
    service.command(GRANT, input=analytics)
    second = service.command(RECORD, input=interaction("e-2"))["data"]["recordInteraction"]
    assert second["suppressed"] is False
    history = service.audit('{ history(customerId: "c-1") { events { type data } } }')
    stored = [
        e["data"]["eventId"] for e in history["data"]["history"]["events"] if "eventId" in e["data"]
    ]
    assert stored == ["e-2"]


def test_opt_out_stores_until_analytics_is_withdrawn(service: Service) -> None:
    assert not service.command(RECORD, input=interaction("e-1"))["data"]["recordInteraction"][
        "suppressed"
    ]
    analytics = {"customerId": "c-1", "purpose": "ANALYTICS", "source": "preference-center"}
    service.command(WITHDRAW, input=analytics)
    late = service.command(RECORD, input=interaction("e-2"))["data"]["recordInteraction"]
    assert late["suppressed"] is True
    unique = f"e-{uuid.uuid4()}"
    assert service.command(RECORD, input=interaction(unique))["data"]["recordInteraction"][
        "suppressed"
    ]
    history = service.audit('{ history(customerId: "c-1") { events { type } } }')
    types = [e["type"] for e in history["data"]["history"]["events"]]
    assert types == ["Registered", "InteractionRecorded", "ConsentWithdrawn"]


@pytest.fixture
def frozen_valkey(settings: Settings) -> Iterator[tuple[Settings, Callable[[bool], None]]]:
    """A Valkey of this test's own, and a switch that freezes (SIGSTOP) and thaws it."""
    folder = Path(tempfile.mkdtemp(prefix="profiles-frozen-valkey-"))
    valkey = start_valkey(folder, persist=False)
    pid = int((folder / "valkey" / "valkey.pid").read_text())

    def freeze(frozen: bool) -> None:
        os.kill(pid, signal.SIGSTOP if frozen else signal.SIGCONT)

    yield with_settings(settings, redis_url=valkey.url, deadline_seconds=1.0), freeze
    freeze(False)
    valkey.stop()
    shutil.rmtree(folder, ignore_errors=True)


SEND_TIME = "query($id: ID!) { profile(customerId: $id) { traits canEmail } }"  # planned


@pytest.mark.parametrize("document", [SEND_TIME, PROFILE], ids=["planned", "strawberry"])
def test_queries_answer_unavailable_by_the_deadline_when_redis_is_frozen_and_recover(
    frozen_valkey: tuple[Settings, Callable[[bool], None]],
    start_service: Callable[..., Service],
    document: str,
) -> None:
    settings, freeze = frozen_valkey
    service = start_service(settings, "query", project=False)
    assert service.query(document, id="c-1")["data"] == {"profile": None}
    freeze(True)
    try:
        started = time.monotonic()
        answer = service.client.post(
            "/graphql", json={"query": document, "variables": {"id": "c-1"}}, timeout=15
        ).json()
        waited = time.monotonic() - started
        assert code(answer) == "UNAVAILABLE", answer
        # Within the deadline and a little: a reply that never comes must not hold the request.
        assert waited < settings.deadline_seconds * 3, waited
    finally:
        freeze(False)
    assert service.query(document, id="c-1")["data"] == {"profile": None}
