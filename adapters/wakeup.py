"""Wakes a projector when the event store commits: Postgres LISTEN on the events channel."""

from __future__ import annotations

import logging
import time

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)


class PostgresWakeup:
    """Waits for a NOTIFY on `channel`. A dropped connection is reopened on the next wait, and
    the caller's timeout doubles as a poll, so a lost NOTIFY delays a batch but never stalls it.
    """

    def __init__(self, database_url: str, channel: str = "profiles_events") -> None:
        self._url = database_url
        self._channel = channel
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def _connection(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, autocommit=True)
            self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        return self._conn

    def wait(self, timeout: float) -> None:
        try:
            for _ in self._connection().notifies(timeout=timeout, stop_after=1):
                pass
        except psycopg.Error:
            logger.warning("LISTEN connection lost; polling until it is back", exc_info=True)
            self.close()
            time.sleep(timeout)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
