"""The Postgres event store: the library's recorder, plus eventIds claimed in the same commit."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    InterfaceError,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Identifier

from domain.errors import SourceMoved
from domain.ports import BatchRead, InteractionKey, RecordedInteraction, SourceOffsets

# Raised by profiles_append_events (migration 0004) when a consumer's stored offsets are past
# the batch's first offset: another consumer committed part of the batch.
OFFSETS_MOVED = "PK409"


class ProfileRecorder(PostgresApplicationRecorder):
    """Claims each interaction's eventId in the transaction that stores its event.

    The claim is a primary-key insert, so two processes racing on one eventId cannot both
    commit: the loser's whole transaction rolls back and its application retries, finding the
    winner's claim. A later retry of the same eventId finds it too, forever.
    """

    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        prefix = events_table_name.removesuffix("_events")

        def named(suffix: str) -> Identifier:
            return Identifier(self.datastore.schema, prefix + suffix)

        table, snapshots = named("_interaction_ids"), named("_snapshots")
        self._append = SQL(
            "SELECT position FROM {f}(%b, %b, %b, %b, %b, %b, %b, %b, %b, %b, %b, %b, %b, %b) "
            "AS position"
        ).format(f=named("_append_events"))
        self._offsets = SQL(
            "SELECT partition, next_offset FROM {t} WHERE group_id = %s AND topic = %s"
        ).format(t=named("_consumer_offsets"))
        self._cursor = SQL("SELECT position FROM {t} WHERE name = %s").format(
            t=named("_relay_cursors")
        )
        self._move_cursor = SQL(
            "INSERT INTO {t} (name, position) VALUES (%s, %s) ON CONFLICT (name) "
            "DO UPDATE SET position = EXCLUDED.position, updated_at = now()"
        ).format(t=named("_relay_cursors"))
        self._firsts = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {t} "
            "WHERE originator_id = ANY(%s) AND originator_version = 1"
        ).format(t=named("_events"))
        self._stream = SQL(
            "SELECT originator_id, originator_version, topic, state, notification_id FROM {t} "
            "WHERE originator_id = %s AND originator_version > %s "
            "ORDER BY originator_version LIMIT %s"
        ).format(t=named("_events"))
        # A rebuild's first pass: streams in key order (the primary key's index), one share of
        # the id space, up to the position it was started at.
        self._by_stream = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {t} "
            "WHERE (originator_id, originator_version) > (%s, %s) AND originator_id <= %s "
            "AND notification_id <= %s ORDER BY originator_id, originator_version LIMIT %s"
        ).format(t=named("_events"))
        self._positions = SQL(
            "SELECT e.originator_id, e.originator_version, e.notification_id FROM {t} e "
            "JOIN unnest(%s::uuid[], %s::bigint[]) AS k(id, v) "
            "ON e.originator_id = k.id AND e.originator_version = k.v"
        ).format(t=named("_events"))
        # Kind 0: a claimed eventId; 1: a stream's latest snapshot; 2: its later events.
        # Arrays go in binary: as text, psycopg formats and escapes each element in Python
        # (4-5 ms of CPU for a batch's 2,000 eventIds, against ~1 ms).
        self._batch_read = SQL(
            "WITH ids AS (SELECT DISTINCT unnest(%(ids)b::uuid[]) AS id), "
            "snap AS (SELECT DISTINCT ON (s.originator_id) s.originator_id, "
            "s.originator_version, s.topic, s.state FROM {s} s "
            "JOIN ids ON s.originator_id = ids.id "
            "ORDER BY s.originator_id, s.originator_version DESC) "
            "SELECT 0 AS kind, c.event_id, c.originator_id, c.originator_version, "
            "c.notification_id, NULL::text AS topic, NULL::bytea AS state "
            "FROM {c} c WHERE c.event_id = ANY(%(events)b::text[]) "
            "UNION ALL "
            "SELECT 1, NULL, originator_id, originator_version, NULL, topic, state FROM snap "
            "UNION ALL "
            "SELECT 2, NULL, e.originator_id, e.originator_version, NULL, e.topic, e.state "
            "FROM {e} e JOIN ids ON e.originator_id = ids.id LEFT JOIN snap "
            "ON snap.originator_id = e.originator_id "
            "WHERE e.originator_version > COALESCE(snap.originator_version, 0) "
            "ORDER BY originator_id, kind, originator_version"
        ).format(s=snapshots, c=table, e=named("_events"))

    # Few retries: a failed write answers UNAVAILABLE and the caller retries; ten, as the
    # library does, would hold every queued command for seconds.
    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.1)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Stores the events and claims their interactions' eventIds in one round trip.

        `profiles_append_events` (migrations 0002, 0003) shreds the data keys of customers
        erased in this transaction, takes the library's table lock, notifies the
        projectors, inserts and claims, as the single statement of an autocommit transaction.
        On a busy 2-core machine it was the number of round trips per transaction, not rows,
        that capped group commit. Plain arrays in binary also cost far less to send than the
        library's composite-typed array, and no pipeline mode is needed (psycopg 3.3's stalls
        on a unix socket once a statement outgrows the socket buffer).
        """
        offsets: SourceOffsets | None = kwargs.get("offsets")
        if not stored_events and offsets is None:
            return None
        claims: Sequence[InteractionKey] = kwargs.get("interactions") or ()
        shred: Sequence[UUID] = kwargs.get("shred") or ()
        entries = offsets.entries if offsets is not None else ()
        params = (
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
            [c.event_id for c in claims],
            [c.originator_id for c in claims],
            [c.version for c in claims],
            list(shred),
            offsets.group if offsets is not None else "",
            [e[0] for e in entries],
            [e[1] for e in entries],
            [e[2] for e in entries],
            [e[3] for e in entries],
            f"{self.datastore.lock_timeout or 2}s",
        )
        try:
            with self.datastore.get_connection() as conn, conn.cursor(binary=True) as curs:
                curs.execute(self._append, params, prepare=True)
                return [row["position"] for row in curs.fetchall()]
        except PersistenceError as error:
            if getattr(error.__cause__, "sqlstate", None) == OFFSETS_MOVED:
                raise SourceMoved(str(error.__cause__)) from None
            raise

    def consumer_offsets(self, group: str, topic: str) -> dict[int, int]:
        """partition -> next offset to consume, as committed with the events."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._offsets, (group, topic))
            return {row["partition"]: row["next_offset"] for row in curs.fetchall()}

    def relay_cursor(self, name: str) -> str | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._cursor, (name,))
            row = curs.fetchone()
            return None if row is None else str(row["position"])

    def move_relay_cursor(self, name: str, position: str) -> None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._move_cursor, (name, position))

    def first_events(self, originator_ids: Collection[UUID]) -> list[StoredEvent]:
        """Each stream's first event (a customer's Registered, which names them)."""
        if not originator_ids:
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._firsts, (list(originator_ids),), prepare=True)
            return [_stored(row) for row in curs.fetchall()]

    def select_stream(
        self, originator_id: UUID, *, after: int = 0, limit: int = 100
    ) -> list[tuple[int, StoredEvent]]:
        """One customer's events with their global positions, oldest first (the audit side)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._stream, (originator_id, after, limit), prepare=True)
            return [(row["notification_id"], _stored(row)) for row in curs.fetchall()]

    def select_by_stream(
        self, after: tuple[UUID, int], last_id: UUID, until: int, limit: int
    ) -> list[tuple[int, StoredEvent]]:
        """Events after `after` (stream id, version) in stream order, of streams up to
        `last_id` and positions up to `until`, with their positions."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self._by_stream, (*after, last_id, until, limit), prepare=True)
            rows = curs.fetchall()
        return [(row[0], StoredEvent(row[1], row[2], row[3], row[4])) for row in rows]

    def read_for_batch(
        self, event_ids: Collection[str], originator_ids: Collection[UUID]
    ) -> BatchRead:
        claimed: dict[str, RecordedInteraction] = {}
        streams: dict[UUID, list[StoredEvent]] = {}
        if not event_ids and not originator_ids:
            return BatchRead(claimed, streams)
        params = {"events": list(event_ids), "ids": list(originator_ids)}
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._batch_read, params, prepare=True)
            for row in curs.fetchall():
                if row["kind"] == 0:
                    claimed[row["event_id"]] = RecordedInteraction(
                        row["originator_id"], row["originator_version"], row["notification_id"]
                    )
                    continue
                streams.setdefault(row["originator_id"], []).append(_stored(row))
        return BatchRead(claimed, streams)

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


def _stored(row: DictRow) -> StoredEvent:
    return StoredEvent(
        originator_id=row["originator_id"],
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=bytes(row["state"]),
    )
