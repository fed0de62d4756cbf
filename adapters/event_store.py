"""The Postgres event store: the library's recorder, plus eventIds claimed in the same commit."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, Literal, ParamSpec, TypeVar
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import (
    InterfaceError,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Identifier

from adapters import deadlines
from adapters.deadlines import DeadlinePassed
from adapters.postgres_pool import LOCK_TIMEOUT, Backend, backend_of
from domain.errors import OutcomeUnknown, SourceMoved
from domain.ports import BatchRead, ClaimedEvent, EventIdClaim, SourceOffsets

logger = logging.getLogger(__name__)

WRITE_ATTEMPTS = 3
# Seconds of a write's deadline kept back for finding out whether a cut-off statement
# committed (at most a quarter of what is left).
SETTLE_RESERVE = 1.0
# Without a deadline of the caller's (a Kafka batch has none), finding out gives up after this.
SETTLE_LIMIT = 10.0


P = ParamSpec("P")
R = TypeVar("R")


def _read(method: Callable[P, R]) -> Callable[P, R]:
    """A read whose connection failed (it died in the pool, the server restarted) is sent
    again on another: reads change nothing, so only attempts and the deadline bound it."""

    @functools.wraps(method)
    def read(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                return method(*args, **kwargs)
            except (OperationalError, InterfaceError) as error:
                if attempt == WRITE_ATTEMPTS or getattr(error.__cause__, "sqlstate", None):
                    raise
                time.sleep(0.02 * attempt)
        raise AssertionError("unreachable")

    return read


def _lock_timeout() -> str:
    """Within what is left of the deadline: a lock held elsewhere fails the write in time."""
    left = deadlines.remaining()
    seconds = LOCK_TIMEOUT if left is None else max(min(LOCK_TIMEOUT, left / 2), 0.001)
    return f"{int(seconds * 1000)}ms"


# Raised by profiles_append_events (migration 0004) when a consumer's stored offsets are past
# the batch's first offset: another consumer committed part of the batch.
OFFSETS_MOVED = "PK409"
# Raised by it (migration 0005) when it runs past the instant its client stopped waiting.
TOO_LATE = "PK408"


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
            "SELECT position FROM {f}(%b, %b, %b, %b, %b, %b, %b, %b, %b, %b, %b, %b, %b, %b, %b) "
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
        # Stops a server process that was running a statement the client lost touch with
        # (waiting up to 200 ms for it to exit); no row when it is gone already.
        self._stop_backend = SQL(
            "SELECT pg_terminate_backend(pid, 200) AS stopped FROM pg_stat_activity "
            "WHERE pid = %s AND backend_start = %s"
        )
        self._stored_as = SQL(
            "SELECT e.originator_id, e.originator_version, e.notification_id, e.state FROM {t} e "
            "JOIN unnest(%s::uuid[], %s::bigint[]) AS k(id, v) "
            "ON e.originator_id = k.id AND e.originator_version = k.v"
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

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Stores the events and claims their eventIds in one round trip; their positions.

        `profiles_append_events` (migrations 0002-0005) shreds the data keys of customers
        erased in this transaction, takes the library's table lock, notifies the
        projectors, inserts and claims, as the single statement of an autocommit transaction.
        On a busy 2-core machine it was the number of round trips per transaction, not rows,
        that capped group commit. Plain arrays in binary also cost far less to send than the
        library's composite-typed array, and no pipeline mode is needed (psycopg 3.3's stalls
        on a unix socket once a statement outgrows the socket buffer).

        When the connection fails after the statement went out, whether it committed is
        found out (`_settle`) before anything is answered: a caller told "not stored" must be
        able to retry without storing twice. A few attempts within the thread's deadline:
        a failed write answers UNAVAILABLE and the client retries; the library's ten would
        hold every queued command for seconds.
        """
        offsets: SourceOffsets | None = kwargs.get("offsets")
        claims: Sequence[EventIdClaim] = kwargs.get("claims") or ()
        if not stored_events and offsets is None and not claims:
            return None
        shred: Sequence[UUID] = kwargs.get("shred") or ()
        entries = offsets.entries if offsets is not None else ()
        arrays = (
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
        )
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            sent: Backend | None = None
            left = deadlines.remaining()
            # Time kept back to find out what a cut-off statement did, when it is cut off.
            by = None if left is None else time.monotonic() + left - min(SETTLE_RESERVE, left / 4)
            try:
                with (
                    deadlines.within(at=by),
                    self.datastore.get_connection() as conn,
                    conn.cursor(binary=True) as curs,
                ):
                    sent = backend_of(conn)
                    not_after = None if by is None or sent is None else sent.server_time(by)
                    params = (*arrays, _lock_timeout(), not_after)
                    curs.execute(self._append, params, prepare=True)
                    return [row["position"] for row in curs.fetchall()]
            except PersistenceError as error:
                cause = error.__cause__
                sqlstate = getattr(cause, "sqlstate", None)
                if sqlstate == OFFSETS_MOVED:
                    raise SourceMoved(str(cause)) from None
                if sqlstate == TOO_LATE:
                    raise DeadlinePassed(str(cause)) from None
                if not isinstance(error, OperationalError | InterfaceError | DeadlinePassed):
                    raise  # refused by the server (a claim taken, ...): nothing committed
                if sent is not None and sqlstate is None:
                    # Not an answer from the server but a lost connection: the statement
                    # may have committed, and its reply never came.
                    positions = self._settle(sent, stored_events, error)
                    if positions is not None:
                        return positions
                if attempt == WRITE_ATTEMPTS or isinstance(error, DeadlinePassed):
                    raise
                logger.info("append attempt %d failed, nothing stored: %s", attempt, error)
                time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    def _settle(
        self, backend: Backend, stored: Sequence[StoredEvent], error: Exception
    ) -> list[int] | None:
        """Whether the statement that `backend` was running committed: its positions if it
        did, None if it did not. Its server process is stopped first and awaited, so that
        "not committed" stays true. OutcomeUnknown when the store does not answer in time.

        The events themselves are the token: each state is encrypted with a fresh nonce, so
        stored bytes equal to the ones sent are this statement's, and a statement commits
        all of its events or none.
        """
        if not stored:
            # Offsets alone: sent again, they are refused (SourceMoved) if they were stored.
            return None
        ids = [e.originator_id for e in stored]
        versions = [e.originator_version for e in stored]
        with deadlines.within(SETTLE_LIMIT):
            positions = self._settle_within(backend, stored, ids, versions)
        if positions is not False:
            return positions
        raise OutcomeUnknown(
            "the event store stopped answering while this write was being committed, and "
            "whether it was stored cannot be told yet; send it again with the same eventId, "
            f"which is then answered duplicate: true if it was ({error})"
        ) from None

    def _settle_within(
        self,
        backend: Backend,
        stored: Sequence[StoredEvent],
        ids: list[UUID | str],
        versions: list[int],
    ) -> list[int] | Literal[False] | None:
        """_settle's answer, or False when the store did not give one by the deadline."""
        while True:
            try:
                with self.datastore.get_connection() as conn, conn.cursor() as curs:
                    curs.execute(self._stop_backend, (backend.pid, backend.started))
                    row = curs.fetchone()
                    if row is not None and not row["stopped"]:
                        continue  # still finishing: ask again
                    curs.execute(self._stored_as, (ids, versions))
                    found = {
                        (r["originator_id"], r["originator_version"]): r for r in curs.fetchall()
                    }
            except DeadlinePassed:
                return False
            except (OperationalError, InterfaceError):
                time.sleep(0.02)  # another pooled connection that died, or a restart
                continue
            ours = [found.get((e.originator_id, e.originator_version)) for e in stored]
            pairs = zip(ours, stored, strict=True)
            if all(r is not None and bytes(r["state"]) == e.state for r, e in pairs):
                logger.warning("a reply was lost after the commit; the events are stored")
                return [int(r["notification_id"]) for r in ours if r is not None]
            return None

    @_read
    def consumer_offsets(self, group: str, topic: str) -> dict[int, int]:
        """partition -> next offset to consume, as committed with the events."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._offsets, (group, topic))
            return {row["partition"]: row["next_offset"] for row in curs.fetchall()}

    @_read
    def relay_cursor(self, name: str) -> str | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._cursor, (name,))
            row = curs.fetchone()
            return None if row is None else str(row["position"])

    def move_relay_cursor(self, name: str, position: str) -> None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._move_cursor, (name, position))

    @_read
    def first_events(self, originator_ids: Collection[UUID]) -> list[StoredEvent]:
        """Each stream's first event (a customer's Registered, which names them)."""
        if not originator_ids:
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._firsts, (list(originator_ids),), prepare=True)
            return [_stored(row) for row in curs.fetchall()]

    @_read
    def select_stream(
        self, originator_id: UUID, *, after: int = 0, limit: int = 100
    ) -> list[tuple[int, StoredEvent]]:
        """One customer's events with their global positions, oldest first (the audit side)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._stream, (originator_id, after, limit), prepare=True)
            return [(row["notification_id"], _stored(row)) for row in curs.fetchall()]

    @_read
    def select_by_stream(
        self, after: tuple[UUID, int], last_id: UUID, until: int, limit: int
    ) -> list[tuple[int, StoredEvent]]:
        """Events after `after` (stream id, version) in stream order, of streams up to
        `last_id` and positions up to `until`, with their positions."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self._by_stream, (*after, last_id, until, limit), prepare=True)
            rows = curs.fetchall()
        return [(row[0], StoredEvent(row[1], row[2], row[3], row[4])) for row in rows]

    @_read
    def read_for_batch(
        self, event_ids: Collection[str], originator_ids: Collection[UUID]
    ) -> BatchRead:
        claimed: dict[str, ClaimedEvent] = {}
        streams: dict[UUID, list[StoredEvent]] = {}
        if not event_ids and not originator_ids:
            return BatchRead(claimed, streams)
        params = {"events": list(event_ids), "ids": list(originator_ids)}
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._batch_read, params, prepare=True)
            for row in curs.fetchall():
                if row["kind"] == 0:
                    claimed[row["event_id"]] = ClaimedEvent(
                        row["originator_id"], row["originator_version"], row["notification_id"]
                    )
                    continue
                streams.setdefault(row["originator_id"], []).append(_stored(row))
        return BatchRead(claimed, streams)

    @_read
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


def ping_store(app: Application[UUID]) -> None:
    """Raises unless the application's store answers one statement through its own pool."""
    recorder = app.recorder
    if not isinstance(recorder, ProfileRecorder):
        raise TypeError(f"{type(recorder).__name__} is not the Postgres event store")
    with recorder.datastore.get_connection() as conn:
        conn.execute("SELECT 1")


def _stored(row: DictRow) -> StoredEvent:
    return StoredEvent(
        originator_id=row["originator_id"],
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=bytes(row["state"]),
    )
