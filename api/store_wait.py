"""Starting without a store: build what needs it once the store answers, and say meanwhile.

A process that exits when Postgres is down at start leaves an orchestrator restarting it in a
loop and its health checks failing for the wrong reason. Instead it starts, answers /healthz,
and builds the part that needs the store in the background: until then that part's requests
answer UNAVAILABLE naming what is awaited, /readyz answers 503, and the log says what it waits
for. The retries back off to `MAX_DELAY`, so the store is used within about that long of being
back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from domain.errors import StoreUnavailable

T = TypeVar("T")

logger = logging.getLogger("profiles")

FIRST_DELAY = 0.1
MAX_DELAY = 1.0
LOG_EVERY = 15.0  # seconds between "still waiting" lines of one unchanged error


class WhenReachable(Generic[T]):
    """`build()` retried in a thread of its own until it succeeds (or `close`)."""

    def __init__(
        self, what: str, build: Callable[[], T], release: Callable[[T], object] | None = None
    ) -> None:
        self.what = what
        self._build = build
        self._release = release
        self._value: T | None = None
        self._waiting = "not tried yet"
        self._since = time.monotonic()
        self._closed = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"await {what}", daemon=True)
        self._thread.start()

    def get(self) -> T:
        """The built value, or StoreUnavailable saying what is awaited and why."""
        value = self._value
        if value is None:
            waited = time.monotonic() - self._since
            raise StoreUnavailable(
                f"{self.what} is not reachable yet (waiting for {waited:.0f}s: {self._waiting}); "
                "nothing was written, retry later"
            )
        return value

    def wait(self, timeout: float | None = None) -> T | None:
        """Blocks until built (None if `timeout` passes first or it is closed)."""
        self._done.wait(timeout)
        return self._value

    @property
    def waiting_for(self) -> str | None:
        """Why it is not built yet, or None once it is."""
        return None if self._value is not None else self._waiting

    def close(self) -> None:
        """Stops trying, and releases the built value, if there is one."""
        with self._lock:
            self._closed.set()
            value, self._value = self._value, None
        self._done.set()
        if value is not None and self._release is not None:
            self._release(value)

    def _run(self) -> None:
        delay, logged, last = FIRST_DELAY, 0.0, ""
        while not self._closed.is_set():
            try:
                value = self._build()
            except Exception as error:
                self._waiting = f"{type(error).__name__}: {error}".strip()
                now = time.monotonic()
                # Messages vary (timings, addresses): a new kind of error is news, not a new text.
                if type(error).__name__ != last or now - logged >= LOG_EVERY:
                    logger.warning("waiting for %s: %s (retrying)", self.what, self._waiting)
                    logged, last = now, type(error).__name__
                self._closed.wait(delay)
                delay = min(delay * 2, MAX_DELAY)
                continue
            with self._lock:
                kept = not self._closed.is_set()
                if kept:
                    self._value = value
            if not kept:  # closed while it was being built
                if self._release is not None:
                    self._release(value)
                return
            if last:
                waited = time.monotonic() - self._since
                logger.warning("%s is reachable (after %.1fs)", self.what, waited)
            self._done.set()
            return
