"""Builds the profiles application on our Postgres store from Settings."""

from __future__ import annotations

import gc

import psycopg
from psycopg.conninfo import conninfo_to_dict

from adapters.data_keys import PostgresDataKeys
from adapters.settings import Settings
from domain.application import ProfileApplication
from domain.ports import Clock


def application_env(settings: Settings) -> dict[str, str]:
    """The eventsourcing settings for our store, derived from DATABASE_URL and our own knobs."""
    if not settings.database_url:
        raise ValueError("DATABASE_URL is not set and no embedded Postgres was started")
    params = conninfo_to_dict(settings.database_url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "APPLICATION_RECORDER_TOPIC": "adapters.event_store:ProfileRecorder",
        "POSTGRES_DBNAME": str(params.get("dbname", "postgres")),
        "POSTGRES_HOST": str(params.get("host", "localhost")),
        "POSTGRES_PORT": str(params.get("port", "5432")),
        "POSTGRES_USER": str(params.get("user", "postgres")),
        "POSTGRES_PASSWORD": str(params.get("password", "")),
        "POSTGRES_POOL_SIZE": str(settings.postgres_pool_size),
        "POSTGRES_MAX_OVERFLOW": str(settings.postgres_pool_size),
        "POSTGRES_CONNECT_TIMEOUT": str(settings.postgres_connect_timeout),
        # Our own migrations own the schema (profiles migrate).
        "CREATE_TABLE": "n",
        "IS_SNAPSHOTTING_ENABLED": "y",
        "AGGREGATE_CACHE_MAXSIZE": str(settings.aggregate_cache_size),
        # One group-commit thread owns the cache; a stale entry from another writer makes the
        # insert collide on (originator_id, originator_version), and the retry reloads it.
        "AGGREGATE_CACHE_FASTFORWARD": "n",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
    }


def ping(database_url: str, timeout: int = 1) -> None:
    """Raises unless Postgres answers within `timeout` seconds (readiness, not the pool)."""
    with psycopg.connect(database_url, connect_timeout=timeout) as conn:
        conn.execute("SELECT 1")


def build_application(
    settings: Settings, clock: Clock, *, cache: bool = True
) -> ProfileApplication:
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
        vault=PostgresDataKeys(str(settings.database_url)),
    )


def tune_gc_for_writers() -> None:
    """For a process that writes through a long-lived application (commands, ingest).

    Cached aggregates are long-lived: collecting the oldest generation as often as the
    default allows rescans all of them. In `profiles ingest` that was ~17 us of a message's
    ~65 us of CPU (mostly full collections); in the commands service it showed as tail
    latency. Almost everything the write path allocates is freed by reference counting, so
    collections this rare still find the few cycles it leaves.
    """
    gc.set_threshold(50_000, 50, 1_000)
