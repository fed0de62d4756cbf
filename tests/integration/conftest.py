"""A migrated database, a Redis namespace and a running HTTP service per test."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from adapters.migrate import migrate
from adapters.settings import Settings
from adapters.telemetry import Telemetry
from api.app import create_app
from domain.application import utc_now
from domain.ports import Clock


@pytest.fixture
def settings(fresh_database_url: str, redis_url: str) -> Settings:
    migrate(fresh_database_url)
    # A namespace per test keeps tests apart on a shared Redis without flushing it.
    return Settings(
        database_url=fresh_database_url,
        redis_url=redis_url,
        redis_namespace=f"t{uuid.uuid4().hex[:10]}:",
        projection_poll_seconds=0.2,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    base_url: str
    client: httpx.Client
    settings: Settings

    def gql(
        self, path: str, query: str, headers: dict[str, str] | None = None, **variables: Any
    ) -> dict[str, Any]:
        # ASCII JSON, as json.dumps writes it: a lone surrogate travels as a \\ud800 escape.
        response = self.client.post(
            path,
            content=json.dumps({"query": query, "variables": variables}),
            headers={"content-type": "application/json", **(headers or {})},
        )
        body: dict[str, Any] = response.json()
        body["_status"] = response.status_code
        return body

    def command(self, query: str, **variables: Any) -> dict[str, Any]:
        return self.gql("/commands/graphql", query, **variables)

    def query(self, query: str, **variables: Any) -> dict[str, Any]:
        return self.gql("/graphql", query, **variables)

    def audit(self, query: str, **variables: Any) -> dict[str, Any]:
        return self.gql("/audit/graphql", query, **variables)


@pytest.fixture
def start_service() -> Iterator[Callable[..., Service]]:
    """Starts the real ASGI app under uvicorn on a loopback port: tests speak real HTTP."""
    running: list[tuple[uvicorn.Server, threading.Thread, httpx.Client]] = []

    def start(
        settings: Settings,
        role: str = "all",
        *,
        project: bool = True,
        clock: Clock = utc_now,
        telemetry: Telemetry | None = None,
        app: ASGIApp | None = None,
    ) -> Service:
        """`app`: serve this one instead of the service's own (a test's variant of it)."""
        if app is None:
            app = create_app(settings, role, project=project, clock=clock, telemetry=telemetry)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the service did not start")
            time.sleep(0.01)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        running.append((server, thread, client))
        return Service(f"http://127.0.0.1:{port}", client, settings)

    yield start
    for server, thread, client in running:
        client.close()
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def service(settings: Settings, start_service: Callable[..., Service]) -> Service:
    return start_service(settings)


def with_settings(settings: Settings, **changes: Any) -> Settings:
    return replace(settings, **changes)
