"""The Postgres event store: the library's recorder, plus eventIds claimed in the same commit."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from adapters.settings import Settings
from domain.application import ProfileApplication
from domain.ports import Clock, InteractionKey, RecordedInteraction


class ProfileRecorder(PostgresApplicationRecorder):
    """Claims each interaction's eventId in the transaction that stores its event.

    The claim is a primary-key insert, so two processes racing on one eventId cannot both
    commit: the loser's whole transaction rolls back and its application retries, finding the
    winner's claim. A later retry of the same eventId finds it too, forever.
    """

    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        table = Identifier(
            self.datastore.schema, events_table_name.removesuffix("_events") + "_interaction_ids"
        )
        self._claim = SQL(
            "INSERT INTO {t} (event_id, notification_id, originator_id, originator_version) "
            "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::uuid[], %s::bigint[]) "
            "RETURNING event_id"
        ).format(t=table)
        self._stream = SQL(
            "SELECT originator_id, originator_version, topic, state, notification_id FROM {t} "
            "WHERE originator_id = %s AND originator_version > %s "
            "ORDER BY originator_version LIMIT %s"
        ).format(t=Identifier(self.datastore.schema, events_table_name))
        self._positions = SQL(
            "SELECT e.originator_id, e.originator_version, e.notification_id FROM {t} e "
            "JOIN unnest(%s::uuid[], %s::bigint[]) AS k(id, v) "
            "ON e.originator_id = k.id AND e.originator_version = k.v"
        ).format(t=Identifier(self.datastore.schema, events_table_name))
        snapshots = Identifier(
            self.datastore.schema, events_table_name.removesuffix("_events") + "_snapshots"
        )
        self._latest = SQL(
            "WITH ids AS (SELECT DISTINCT unnest(%s::uuid[]) AS id), "
            "snap AS (SELECT DISTINCT ON (s.originator_id) s.originator_id, "
            "s.originator_version, s.topic, s.state FROM {s} s "
            "JOIN ids ON s.originator_id = ids.id "
            "ORDER BY s.originator_id, s.originator_version DESC) "
            "SELECT 0 AS kind, originator_id, originator_version, topic, state FROM snap "
            "UNION ALL "
            "SELECT 1, e.originator_id, e.originator_version, e.topic, e.state "
            "FROM {e} e JOIN ids ON e.originator_id = ids.id LEFT JOIN snap "
            "ON snap.originator_id = e.originator_id "
            "WHERE e.originator_version > COALESCE(snap.originator_version, 0) "
            "ORDER BY originator_id, kind, originator_version"
        ).format(s=snapshots, e=Identifier(self.datastore.schema, events_table_name))
        self._find = SQL(
            "SELECT event_id, originator_id, originator_version, notification_id FROM {t} "
            "WHERE event_id = ANY(%s)"
        ).format(t=table)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The library's insert, without psycopg's pipeline mode.

        psycopg 3.3's pipeline stalls for ever on a unix socket once one statement's parameters
        outgrow the socket buffer (about 1,500 event-sized rows: the server waits in ClientRead,
        the client in Connection.wait). Plain mode costs three more round trips per transaction,
        not per event, and a group-committed transaction may hold thousands of events.
        """
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            self._insert_events(curs, stored_events, **kwargs)
            if not stored_events:
                return None
            self._insert_stored_events(curs, stored_events, **kwargs)
            return self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)

    def select_stream(
        self, originator_id: UUID, *, after: int = 0, limit: int = 100
    ) -> list[tuple[int, StoredEvent]]:
        """One customer's events with their global positions, oldest first (the audit side)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._stream, (originator_id, after, limit), prepare=True)
            return [
                (
                    row["notification_id"],
                    StoredEvent(
                        originator_id=row["originator_id"],
                        originator_version=row["originator_version"],
                        topic=row["topic"],
                        state=bytes(row["state"]),
                    ),
                )
                for row in curs.fetchall()
            ]

    def select_latest(self, originator_ids: Collection[UUID]) -> dict[UUID, list[StoredEvent]]:
        streams: dict[UUID, list[StoredEvent]] = {}
        if not originator_ids:
            return streams
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._latest, (list(originator_ids),), prepare=True)
            for row in curs.fetchall():
                streams.setdefault(row["originator_id"], []).append(
                    StoredEvent(
                        originator_id=row["originator_id"],
                        originator_version=row["originator_version"],
                        topic=row["topic"],
                        state=bytes(row["state"]),
                    )
                )
        return streams

    def find_positions(self, keys: Collection[tuple[UUID, int]]) -> dict[tuple[UUID, int], int]:
        if not keys:
            return {}
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                self._positions,
                ([k[0] for k in keys], [k[1] for k in keys]),
                prepare=True,
            )
            return {
                (row["originator_id"], row["originator_version"]): row["notification_id"]
                for row in curs.fetchall()
            }

    def find_interactions(self, event_ids: Collection[str]) -> dict[str, RecordedInteraction]:
        if not event_ids:
            return {}
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._find, (list(event_ids),), prepare=True)
            return {
                row["event_id"]: RecordedInteraction(
                    row["originator_id"], row["originator_version"], row["notification_id"]
                )
                for row in curs.fetchall()
            }

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        claims: Sequence[InteractionKey] = kwargs.get("interactions") or ()
        if claims and ids:
            position = {
                (e.originator_id, e.originator_version): n
                for e, n in zip(stored_events, ids, strict=True)
            }
            # No ON CONFLICT: a collision must abort the transaction, not just skip a row.
            curs.execute(
                self._claim,
                (
                    [c.event_id for c in claims],
                    [position[(c.originator_id, c.version)] for c in claims],
                    [c.originator_id for c in claims],
                    [c.version for c in claims],
                ),
                prepare=True,
            )
            curs.fetchall()
        return ids


def application_env(settings: Settings) -> dict[str, str]:
    """The eventsourcing settings for our store, derived from DATABASE_URL and our own knobs."""
    if not settings.database_url:
        raise ValueError("DATABASE_URL is not set and no embedded Postgres was started")
    params = conninfo_to_dict(settings.database_url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "APPLICATION_RECORDER_TOPIC": f"{__name__}:ProfileRecorder",
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
    )
