"""Session-wide servers for the tests: the configured ones, else embedded ones started on demand.

DATABASE_URL, REDIS_URL and KAFKA_BOOTSTRAP_SERVERS (read through Settings) point the tests at
existing servers; without them each server starts the first time a test asks for it.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from adapters.embedded import start_kafka, start_postgres, start_valkey
from adapters.settings import Settings


def with_database(database_url: str, name: str) -> str:
    """The same server URL with another database name (keeps `?host=/socket/dir`)."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def env_settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def embedded_dir() -> Iterator[Path]:
    # Not under pytest's tmp dir: embedded Postgres runs as another user when tests run as root
    # and needs to traverse the path, while pytest keeps resetting its root to mode 0700.
    path = Path(tempfile.mkdtemp(prefix="profiles-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(env_settings: Settings, embedded_dir: Path) -> Iterator[str]:
    if env_settings.database_url is not None:
        yield env_settings.database_url
        return
    server = start_postgres(embedded_dir, delete_on_stop=True)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def new_database(database_url: str) -> Iterator[Callable[[], str]]:
    """Creates uniquely named empty databases on the test server; drops them after the test."""
    created: list[str] = []

    def create() -> str:
        name = f"test_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return with_database(database_url, name)

    yield create
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name in created:
            # FORCE: a connection a failed test left open must not keep the database alive.
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(name)))


@pytest.fixture
def fresh_database_url(new_database: Callable[[], str]) -> str:
    return new_database()


@pytest.fixture(scope="session")
def redis_url(env_settings: Settings, embedded_dir: Path) -> Iterator[str]:
    if env_settings.redis_url is not None:
        yield env_settings.redis_url
        return
    server = start_valkey(embedded_dir, persist=False)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(env_settings: Settings, embedded_dir: Path) -> Iterator[str]:
    if env_settings.kafka_bootstrap_servers is not None:
        yield env_settings.kafka_bootstrap_servers
        return
    server = start_kafka(embedded_dir)
    try:
        yield server.url
    finally:
        server.stop()
