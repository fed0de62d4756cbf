"""Waiting for a store that is not there: retries with capped backoff, and says in the log what
is awaited (which store, where, the error) without a line per retry.

A process that needs Postgres or Redis starts anyway and waits here (`await_store`), or builds
what needs the store in the background (`WhenReachable`) while its requests answer UNAVAILABLE
naming what is awaited; a loop that finds a store gone keeps its log short with `Outage`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import urlsplit

import redis
from psycopg.conninfo import conninfo_to_dict

from adapters.store_config import ping
from domain.errors import StoreUnavailable

T = TypeVar("T")

logger = logging.getLogger(__name__)

FIRST_DELAY = 0.1  # seconds before the second attempt
# The longest pause between attempts: a store that comes back is used within about a second.
MAX_DELAY = 1.0
REPEAT_SECONDS = 10.0  # the same error is logged again after this long, not at every attempt


@dataclass(frozen=True)
class Store:
    kind: str  # postgres, redis
    address: str  # host:port/database, never a password
    probe: Callable[[], object]  # raises unless the store answers, within about a second

    def __str__(self) -> str:
        return f"{self.kind} at {self.address}"


def postgres_store(database_url: str) -> Store:
    params = conninfo_to_dict(database_url)
    host = str(params.get("host", "localhost"))
    where = f"{host}:{params.get('port', '5432')}/{params.get('dbname', 'postgres')}"
    return Store("postgres", where, lambda: ping(database_url))


def redis_store(redis_url: str) -> Store:
    parts = urlsplit(redis_url)
    where = f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"

    def probe() -> None:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=1)
        try:
            client.ping()
        finally:
            client.close()

    return Store("redis", where, probe)


def describe(error: BaseException) -> str:
    """An error on one short line: its type and the first line of its message."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


class Outage:
    """The log of one thing failing again and again: the first failure and each new error at
    once, the same error again every REPEAT_SECONDS, and the end with how long it lasted."""

    def __init__(
        self,
        what: str,
        back: str,
        log: logging.Logger = logger,
        *,
        trace: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what  # "waiting for postgres at ...": what each failure line starts with
        self.back = back  # "postgres at ... answers": what the last line says
        self._log = log
        self._trace = trace  # the first failure's traceback (a failing page may be a bug)
        self._clock = clock
        self._since: float | None = None
        self._logged: tuple[str, float] | None = None
        self.attempts = 0

    def failed(self, error: BaseException) -> str:
        """Logs the failure if it is news; returns the line that says what is wrong."""
        now = self._clock()
        first = self._since is None
        if self._since is None:
            self._since = now
        self.attempts += 1
        line = f"{self.what}: {describe(error)}"
        if (
            self._logged is None
            or self._logged[0] != line
            or now - self._logged[1] >= REPEAT_SECONDS
        ):
            self._logged = (line, now)
            lasting = "" if first else f" (for {now - self._since:.0f} s, {self.attempts} tries)"
            self._log.warning(
                "%s%s; retrying", line, lasting, exc_info=error if first and self._trace else None
            )
        return line

    def ended(self) -> None:
        if self._since is not None:
            self._log.warning("%s after %.1f s", self.back, self._clock() - self._since)
        self._since, self._logged, self.attempts = None, None, 0


def await_store(
    store: Store,
    stop: threading.Event,
    on_wait: Callable[[str], None] | None = None,
) -> bool:
    """Probes the store until it answers (True) or `stop` is set (False), pausing between
    attempts from FIRST_DELAY doubling up to MAX_DELAY; `on_wait` hears what is awaited."""
    outage = Outage(f"waiting for {store}", f"{store} answers")
    delay = FIRST_DELAY
    while not stop.is_set():
        try:
            store.probe()
        except Exception as error:
            line = outage.failed(error)
            if on_wait is not None:
                on_wait(line)
            stop.wait(delay)
            delay = min(delay * 2, MAX_DELAY)
            continue
        outage.ended()
        return True
    return False


class WhenReachable(Generic[T]):
    """`build()` in a thread of its own once `store` answers (again if the build fails), for
    a process that serves requests meanwhile: `get` answers the built value, or raises
    StoreUnavailable saying what is awaited and for how long."""

    def __init__(
        self, store: Store, build: Callable[[], T], release: Callable[[T], object] | None = None
    ) -> None:
        self.store = store
        self._build = build
        self._release = release
        self._value: T | None = None
        self._waiting = f"waiting for {store}"
        self._since = time.monotonic()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        # Tried once in the caller's thread first: with the store up (the usual start), the
        # process serves no request before what it needs is built.
        try:
            store.probe()
            self._value = build()
        except Exception as error:
            self._note(f"waiting for {store}: {describe(error)}")
            threading.Thread(target=self._run, name=f"await {store.kind}", daemon=True).start()

    def get(self) -> T:
        value = self._value
        if value is None:
            waited = time.monotonic() - self._since
            raise StoreUnavailable(
                f"not reachable yet: {self._waiting} (for {waited:.0f} s); nothing was "
                "written, retry later"
            )
        return value

    def close(self) -> None:
        """Stops trying, and releases the built value, if there is one."""
        with self._lock:
            self._closed.set()
            value, self._value = self._value, None
        if value is not None and self._release is not None:
            self._release(value)

    def _note(self, line: str) -> None:
        self._waiting = line

    def _run(self) -> None:
        while await_store(self.store, self._closed, self._note):
            try:
                value = self._build()
            except Exception as error:
                # It answered the probe, then failed the build (it went again, or refuses us).
                self._note(f"building on {self.store}: {describe(error)}")
                logger.warning("%s; retrying", self._waiting)
                self._closed.wait(MAX_DELAY)
                continue
            with self._lock:
                kept = not self._closed.is_set()
                if kept:
                    self._value = value
            if not kept and self._release is not None:
                self._release(value)  # closed while it was being built
            return
