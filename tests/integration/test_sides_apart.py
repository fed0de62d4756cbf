"""Invariant 3: each side reaches only its own store, proven by giving it no other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from adapters.settings import Settings
from tests.integration.conftest import Service, free_port
from tests.integration.queries import GRANT, PROFILE, RECORD
from tests.integration.test_commands_over_http import interaction

NOWHERE_REDIS = f"redis://127.0.0.1:{free_port()}/0"
NOWHERE_POSTGRES = f"postgresql://postgres@127.0.0.1:{free_port()}/none?connect_timeout=1"


def test_command_side_works_without_any_redis(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    commands = start_service(replace(settings, redis_url=NOWHERE_REDIS), "commands", project=False)
    body = commands.command(RECORD, input=interaction("e-1"))
    assert body["data"]["recordInteraction"]["version"] == 2, body


def test_query_side_works_without_any_postgres(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    writer = start_service(settings)  # writes and projects into this test's namespace
    consent = {"customerId": "c-1", "purpose": "PERSONALIZATION", "source": "form"}
    position = writer.command(GRANT, input=consent)["data"]["grantConsent"]["position"]
    writer.query(PROFILE, id="c-1", min=position)
    reader = start_service(replace(settings, database_url=NOWHERE_POSTGRES), "query", project=False)
    profile = reader.query(PROFILE, id="c-1")["data"]["profile"]
    assert profile["canPersonalize"] is True
    assert reader.client.post("/commands/graphql", json={"query": "{ service }"}).status_code == 404


def test_audit_side_works_without_any_redis(
    settings: Settings, start_service: Callable[..., Service]
) -> None:
    writer = start_service(settings, "commands", project=False)
    writer.command(RECORD, input=interaction("e-1"))
    audit = start_service(replace(settings, redis_url=NOWHERE_REDIS), "audit", project=False)
    history = audit.audit('{ history(customerId: "c-1") { events { type } } }')
    assert [e["type"] for e in history["data"]["history"]["events"]] == [
        "Registered",
        "InteractionRecorded",
    ]
