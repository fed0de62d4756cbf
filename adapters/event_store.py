"""The Postgres event store: the library's recorder, plus eventIds claimed in the same commit."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier
from psycopg.sql import Literal as sql_literal

from domain.ports import InteractionKey, RecordedInteraction


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
        events = Identifier(self.datastore.schema, events_table_name)
        self._claim = SQL(
            "COPY {t} (event_id, notification_id, originator_id, originator_version) "
            "FROM STDIN (FORMAT BINARY)"
        ).format(t=table)
        self._copy_events = SQL(
            "COPY {t} (originator_id, originator_version, topic, state, notification_id) "
            "FROM STDIN (FORMAT BINARY)"
        ).format(t=events)
        # Reserves n consecutive positions; safe because the table lock is held: every writer
        # takes it before touching the sequence, so positions still follow commit order.
        sequence = f"{self.datastore.schema}.{events_table_name}"
        self._reserve = SQL(
            "SELECT setval(pg_get_serial_sequence({q}, 'notification_id'), "
            "nextval(pg_get_serial_sequence({q}, 'notification_id')) + %s - 1) AS last"
        ).format(q=sql_literal(sequence))
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
        """Stores the events and claims their interactions' eventIds, all in one transaction.

        The library inserts one composite-typed array in pipeline mode; here the rows go in by
        binary COPY with positions reserved under the same table lock, which is several times
        cheaper in Python per event. It also avoids psycopg 3.3's pipeline mode, which stalls
        for ever on a unix socket once a statement outgrows the socket buffer (about 1,500
        event-sized rows).
        """
        claims: Sequence[InteractionKey] = kwargs.get("interactions") or ()
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            self._insert_events(curs, stored_events, **kwargs)
            if not stored_events:
                return None
            self._lock_table(curs)
            self._notify_channel(curs)
            curs.execute(self._reserve, (len(stored_events),), prepare=True)
            row = curs.fetchone()
            assert row is not None
            first = row["last"] - len(stored_events) + 1
            ids = list(range(first, row["last"] + 1))
            with curs.copy(self._copy_events) as copy:
                copy.set_types(["uuid", "int8", "text", "bytea", "int8"])
                for event, position in zip(stored_events, ids, strict=True):
                    copy.write_row(
                        (
                            event.originator_id,
                            event.originator_version,
                            event.topic,
                            event.state,
                            position,
                        )
                    )
            if claims:
                self._claim_interactions(curs, stored_events, ids, claims)
            return ids

    def _claim_interactions(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        ids: Sequence[int],
        claims: Sequence[InteractionKey],
    ) -> None:
        position = {
            (e.originator_id, e.originator_version): n
            for e, n in zip(stored_events, ids, strict=True)
        }
        # A claimed eventId violates the primary key and aborts the whole transaction.
        with curs.copy(self._claim) as copy:
            copy.set_types(["text", "int8", "uuid", "int8"])
            for c in claims:
                copy.write_row(
                    (c.event_id, position[(c.originator_id, c.version)], c.originator_id, c.version)
                )

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
