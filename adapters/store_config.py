"""Builds the profiles application on our Postgres store from Settings."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict

from adapters.data_keys import PostgresDataKeys
from adapters.event_store import SETTLE_RESERVE
from adapters.postgres_pool import STATEMENT_TIMEOUT
from adapters.settings import Settings
from domain.application import ProfileApplication
from domain.ports import Clock


def application_env(settings: Settings) -> dict[str, str]:
    """The eventsourcing settings for our store, derived from DATABASE_URL and our own knobs."""
    if not settings.database_url:
        raise ValueError("DATABASE_URL is not set and no embedded Postgres was started")
    params = conninfo_to_dict(settings.database_url)
    return {
        # The library's factory with our pool (`postgres_pool`): quick recovery, deadlines.
        "PERSISTENCE_MODULE": "adapters.postgres_pool:StoreFactory",
        "APPLICATION_RECORDER_TOPIC": "adapters.event_store:ProfileRecorder",
        "POSTGRES_DBNAME": str(params.get("dbname", "postgres")),
        "POSTGRES_HOST": str(params.get("host", "localhost")),
        "POSTGRES_PORT": str(params.get("port", "5432")),
        "POSTGRES_USER": str(params.get("user", "postgres")),
        "POSTGRES_PASSWORD": str(params.get("password", "")),
        "POSTGRES_POOL_SIZE": str(settings.postgres_pool_size),
        "POSTGRES_MAX_OVERFLOW": str(settings.postgres_pool_size),
        "POSTGRES_CONNECT_TIMEOUT": str(settings.postgres_connect_timeout),
        STATEMENT_TIMEOUT: str(statement_timeout(settings.deadline_seconds)),
        # Our own migrations own the schema (profiles migrate).
        "CREATE_TABLE": "n",
        "IS_SNAPSHOTTING_ENABLED": "y",
        "AGGREGATE_CACHE_MAXSIZE": str(settings.aggregate_cache_size),
        # One group-commit thread owns the cache; a stale entry from another writer makes the
        # insert collide on (originator_id, originator_version), and the retry reloads it.
        "AGGREGATE_CACHE_FASTFORWARD": "n",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
    }


def statement_timeout(deadline: float) -> float:
    """How long the server lets one statement run: within a request's deadline, less the time
    kept for finding out what a cut-off write did (`event_store.SETTLE_RESERVE`)."""
    return deadline - min(SETTLE_RESERVE, deadline / 4)


def ping(database_url: str, timeout: int = 1) -> None:
    """Raises unless Postgres answers within `timeout` seconds (readiness, not the pool)."""
    with psycopg.connect(database_url, connect_timeout=timeout) as conn:
        conn.execute("SELECT 1")


def build_application(
    settings: Settings, clock: Clock, *, cache: bool = True, key_cache: int = 100_000
) -> ProfileApplication:
    """`cache`: aggregates in memory (writers); `key_cache`: customers' data keys kept."""
    env = application_env(settings)
    if not cache:
        env["AGGREGATE_CACHE_MAXSIZE"] = ""
    # The library reads PROFILES_<KEY> before <KEY> and merges os.environ under our values:
    # setting both spellings keeps a stray PROFILES_POSTGRES_HOST in the environment out.
    prefix = ProfileApplication.name.upper()
    env.update({f"{prefix}_{key}": value for key, value in list(env.items())})
    return ProfileApplication(
        env,
        clock=clock,
        consent_model=settings.consent_model,
        snapshot_interval=settings.snapshot_interval,
        retries=settings.command_retries,
        vault=PostgresDataKeys(str(settings.database_url), cache_size=key_cache),
    )
