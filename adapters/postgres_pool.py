"""Postgres connections that recover quickly and never keep a request waiting past its deadline.

The library builds a psycopg_pool pool; this factory swaps in one that differs in four ways,
each found under fault injection:

* Reconnection backs off to at most `MAX_RECONNECT_DELAY`. psycopg_pool doubles its delay
  without a cap: after a 40 s outage the next attempt was up to 20 s after Postgres was back,
  and every command in between answered UNAVAILABLE.
* A connection that sat idle in the pool for more than `CHECK_AFTER_IDLE` is checked (one
  empty statement) before it is handed out, so no request gets one that died meanwhile (after
  a restart, the first audit requests used to fail one per pooled connection). A busy
  connection is not checked: under load this costs nothing.
* Taking a connection waits no longer than the thread's deadline (`adapters.deadlines`), and
  the calls made on it are cut off at that deadline. While Postgres refuses connections, a
  request with none to take fails at once (`Unreachable`), not at its deadline.
* Every connection carries server-side statement and lock timeouts, so a statement the
  client gave up on cannot go on (and commit) long after; and it remembers which server
  process serves it, so that one can be found and stopped (`event_store`).
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventsourcing.postgres import ConnectionPool, PostgresFactory
from eventsourcing.utils import Environment, EnvType
from psycopg import Connection
from psycopg_pool import PoolTimeout
from psycopg_pool.base import AttemptWithBackoff

from adapters import deadlines

CHECK_AFTER_IDLE = 1.0  # seconds
LOCK_TIMEOUT = 2.0  # seconds any statement waits for a lock, at most (a read behind a held lock)
MAX_RECONNECT_DELAY = 0.5  # seconds: a store that is back is used within about this long

# Our keys in the application's environment (set by `store_config.application_env`).
STATEMENT_TIMEOUT = "POSTGRES_STATEMENT_TIMEOUT"  # seconds; 0 or unset: none


@dataclass(frozen=True)
class Backend:
    """The server process behind a connection: (pid, start) names it uniquely, even after
    a restart hands out the same pid again; and how far the server's clock is ahead of ours
    (seconds, to within half a round trip), to tell it instants in its own time."""

    pid: int
    started: datetime
    clock_ahead: float

    def server_time(self, monotonic: float) -> datetime:
        """An instant of our monotonic clock, in the server's wall-clock time."""
        wall = time.time() + (monotonic - time.monotonic()) + self.clock_ahead
        return datetime.fromtimestamp(wall, UTC)


class _CappedAttempt(AttemptWithBackoff):
    INITIAL_DELAY = 0.1

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, MAX_RECONNECT_DELAY)


class Unreachable(PoolTimeout):
    """The pool has no connection to give, and its last attempt to open one failed: the
    caller hears it at once instead of waiting out its deadline in an outage."""


class StorePool(ConnectionPool[Any]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._failing: str | None = None  # why the last connection attempt failed, if it did

    def _connect(self, timeout: float | None = None) -> Any:
        try:
            conn = super()._connect(timeout)
        except Exception as error:
            self._failing = str(error).strip() or type(error).__name__
            raise
        self._failing = None
        return conn

    def getconn(self, timeout: float | None = None) -> Any:
        # The idle check is ours, not the pool's `check`: after a failed check the pool waits
        # 1 s, then 2 s..., before the next connection, and a pool of dead ones outlasts any
        # deadline. Here a dead one is dropped (and replaced) and the next is tried at once.
        while True:
            left = deadlines.check("taking a Postgres connection")
            failing = self._failing
            if failing is not None and not self._pool:
                # Reconnection goes on in the background (`_CappedAttempt`).
                raise Unreachable(f"Postgres is unreachable: {failing}")
            wait = self.timeout if timeout is None else timeout
            conn = super().getconn(wait if left is None else min(wait, left))
            try:
                _check_if_idle(conn)
            except Exception:
                self.putconn(conn)  # broken now: the pool discards it and makes another
                continue
            return conn

    def putconn(self, conn: Any) -> None:
        _idle_since[conn] = time.monotonic()
        super().putconn(conn)

    @contextlib.contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[Any]:
        with super().connection(timeout) as conn, deadlines.guarded(conn.fileno(), "Postgres"):
            yield conn

    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        # The first failure creates the attempt that later ones reuse: capped from then on.
        if attempt is None:
            attempt = _CappedAttempt(timeout=self.reconnect_timeout)
        super()._add_connection(attempt, growing)


_idle_since: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
_backends: weakref.WeakKeyDictionary[Any, Backend] = weakref.WeakKeyDictionary()


def backend_of(conn: Any) -> Backend | None:
    return _backends.get(conn)


def _check_if_idle(conn: Any) -> None:
    since = _idle_since.get(conn)
    if since is not None and time.monotonic() - since > CHECK_AFTER_IDLE:
        with deadlines.guarded(conn.fileno(), "checking a pooled connection"):
            ConnectionPool.check_connection(conn)


def _configure(
    library: Callable[[Connection[Any]], None], statement_timeout: float
) -> Callable[[Connection[Any]], None]:
    statement = str(int(statement_timeout * 1000))
    lock = str(int(LOCK_TIMEOUT * 1000))

    def configure(conn: Connection[Any]) -> None:
        library(conn)  # autocommit, idle-in-transaction timeout
        sent = time.time()
        row = conn.execute(
            "SELECT pg_backend_pid() AS pid, backend_start AS started, "
            "extract(epoch FROM clock_timestamp())::float8 AS now, "
            "set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false) "
            "FROM pg_stat_activity WHERE pid = pg_backend_pid()",
            (statement, lock),
        ).fetchone()
        if row is not None:
            values = row if isinstance(row, dict) else dict(zip(_COLUMNS, row, strict=False))
            ahead = float(values["now"]) - (sent + time.time()) / 2
            _backends[conn] = Backend(int(values["pid"]), values["started"], ahead)
        _idle_since[conn] = time.monotonic()  # it waits in the pool from now on

    return configure


_COLUMNS = ("pid", "started", "now")


class StoreFactory(PostgresFactory):
    """The library's Postgres factory with `StorePool` in place of its pool."""

    def __init__(self, env: Environment | EnvType | None = None) -> None:
        super().__init__(env)
        datastore = self.datastore
        library = datastore.pool
        statement_timeout = float(self.env.get(STATEMENT_TIMEOUT) or 0)
        datastore.pool = StorePool(
            library.conninfo,
            connection_class=library.connection_class,
            kwargs=library.kwargs,
            min_size=library.min_size,
            max_size=library.max_size,
            open=False,
            configure=_configure(datastore.after_connect_func(), statement_timeout),
            name=library.name,
            timeout=library.timeout,
            max_waiting=library.max_waiting,
            max_lifetime=library.max_lifetime,
            get_password_func=library.get_password_func,
        )
