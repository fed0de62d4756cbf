"""How long a thread may wait on a store, and what ends the wait when that time is up.

A request sets its deadline on the thread that does its store work (`within`). Every Postgres
connection that thread takes (`guarded`) is then watched: if the deadline passes while a call
is blocked on it (a frozen server, a lock held by someone else, a reply that never comes), the
watchdog shuts the connection's socket down, so the blocked call fails at once instead of
waiting for the server. A call started after the deadline fails before anything is sent. The
server gives up by itself too (statement and lock timeouts, `postgres_pool`), so what the
request started there cannot commit later; whether a write that was cut off committed before
that is for the caller to find out (`event_store`).

Socket shutdown rather than a query cancel: a cancel request needs a new connection to the
server, which a frozen or unreachable server never accepts.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from eventsourcing.persistence import PersistenceError

_local = threading.local()


class DeadlinePassed(PersistenceError):
    """The request's time for the store is up. Not an OperationalError: the library's
    retry loops (ten attempts 0.2 s apart) retry those, and this must end them."""


def remaining() -> float | None:
    """Seconds left for this thread's store work; None when it has no deadline."""
    at: float | None = getattr(_local, "at", None)
    return None if at is None else at - time.monotonic()


def deadline() -> float | None:
    """This thread's deadline on the monotonic clock, or None."""
    return getattr(_local, "at", None)


@contextlib.contextmanager
def within(seconds: float | None = None, *, at: float | None = None) -> Iterator[None]:
    """Store calls made on this thread inside the block end `seconds` from now (or `at`, on
    the monotonic clock). A deadline already set that comes sooner stays: never widened."""
    chosen = at if seconds is None else time.monotonic() + seconds
    outer: float | None = getattr(_local, "at", None)
    if chosen is None or (outer is not None and outer <= chosen):
        yield
        return
    _local.at = chosen
    try:
        yield
    finally:
        _local.at = outer


def check(what: str) -> float | None:
    """Raises DeadlinePassed when no time is left; returns the seconds left (None: no bound)."""
    left = remaining()
    if left is not None and left <= 0:
        raise DeadlinePassed(f"the request's deadline passed before {what}")
    return left


@dataclass(order=True)
class _Watch:
    at: float
    order: int
    fileno: int = field(compare=False)
    fired: bool = field(default=False, compare=False)
    done: bool = field(default=False, compare=False)


class Watchdog:
    """One thread for the whole process, however many connections it watches."""

    def __init__(self) -> None:
        self._heap: list[_Watch] = []
        self._wake = threading.Condition()
        self._counter = itertools.count()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watching(self, fileno: int, at: float) -> Iterator[_Watch]:
        """Shuts the socket `fileno` down if the block is still running at `at`."""
        watch = _Watch(at, next(self._counter), fileno)
        with self._wake:
            heapq.heappush(self._heap, watch)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadlines", daemon=True)
                self._thread.start()
            self._wake.notify()
        try:
            yield watch
        finally:
            with self._wake:
                watch.done = True  # the thread drops it when it comes to the top

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._heap and self._heap[0].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._wake.wait()
                    continue
                first = self._heap[0]
                delay = first.at - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                heapq.heappop(self._heap)
                # Under the lock: the connection cannot be handed back (and its descriptor
                # reused by another socket) between the check and the shutdown.
                first.fired = True
                _shut_down(first.fileno)


def _shut_down(fileno: int) -> None:
    # shutdown() acts on the socket, not on this descriptor: the blocked call's own
    # descriptor sees end-of-file at once.
    with contextlib.suppress(OSError):
        duplicate = socket.socket(fileno=os.dup(fileno))
        try:
            duplicate.shutdown(socket.SHUT_RDWR)
        finally:
            duplicate.close()


WATCHDOG = Watchdog()


@contextlib.contextmanager
def guarded(fileno: int, what: str) -> Iterator[None]:
    """The block's calls on this socket end by this thread's deadline (if it has one); a
    call cut off by it raises DeadlinePassed, chained to the connection's own error."""
    at = deadline()
    if at is None:
        yield
        return
    check(what)
    with WATCHDOG.watching(fileno, at) as watch:
        try:
            yield
        except Exception as error:
            if watch.fired:
                raise DeadlinePassed(f"the store did not answer {what} in time") from error
            raise
