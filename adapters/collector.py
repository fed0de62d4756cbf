"""Garbage-collector settings: for service processes, and for batch work (rebuilds, catch-up).

A page of 5,000 events makes hundreds of thousands of short-lived, acyclic objects (decoded
events, ops, tuples). With the default threshold (a young collection every 700 allocations)
the collector ran thousands of times per page and, as the heap grew, its older generations
were walked again and again: a fifth to a third of a rebuild's time on one core
(200,606 events: 7,675/s with the defaults, 11,679/s with these). Reference counting frees
all of that anyway; the collector is only for cycles, which this work hardly makes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import threading
from collections.abc import Callable, Iterator

YOUNG = 50_000  # allocations between young collections (default 700)
OLDER = (50, 1_000)  # young collections per middle one, middle ones per full one (10, 10)


def tune_for_services() -> None:
    """For a long-running service process (every role, ingest).

    Cached aggregates are long-lived: collecting the oldest generation as often as the
    default allows rescans all of them. In `profiles ingest` that was ~17 us of a message's
    ~65 us of CPU (mostly full collections); in the commands service it showed as tail
    latency. The query side allocates a few thousand short-lived objects per profile
    answer: with the defaults it ran a full collection every few dozen requests (CPU per
    profile read 0.51 ms, 0.46 ms with these; `bench --only query`). Almost everything either
    path allocates is freed by reference counting, so collections this rare still find the
    few cycles it leaves; large documents, which leave more, pace full collections of their
    own (`CyclePacer`).
    """
    gc.set_threshold(YOUNG, *OLDER)


@contextlib.contextmanager
def few_collections() -> Iterator[None]:
    """Collects rarely while the block runs; the settings before it afterwards."""
    before = gc.get_threshold()
    gc.set_threshold(YOUNG, before[1], before[2])
    try:
        yield
    finally:
        gc.set_threshold(*before)


class CyclePacer:
    """Full collections paced by the large work a process is asked to do, not by allocations.

    With the writers' thresholds a full collection almost never runs, and a large request
    leaves cycles behind (graphql-core's tokens link both ways and reach the document's text;
    the request and its execution context refer to each other) that outlive the young
    generation while it runs: under a stream of 1 MB documents a process grew past 1 GB.
    Each large piece of work reports its estimated bytes; every `budget` of them the process
    collects in full and gives the freed memory back to the system, so what large requests
    leave behind stays under about `budget`, and small requests never pay for a collection.
    """

    def __init__(self, budget: int = 64 << 20, smallest: int = 1 << 20) -> None:
        self.budget = budget
        self.smallest = smallest  # less than this is left to the thresholds
        self.pending = 0
        self.collections = 0
        self._lock = threading.Lock()

    def spent(self, estimate: int) -> None:
        if estimate < self.smallest:
            return
        with self._lock:
            self.pending += estimate
            if self.pending < self.budget:
                return
            self.pending = 0
            self.collections += 1
        gc.collect()
        _give_back()


def _trimmer() -> Callable[[], None]:
    """glibc's malloc_trim: freed heap pages go back to the system (RSS comes down)."""
    name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    if trim is None:
        return lambda: None

    def give_back() -> None:
        trim(0)

    return give_back


_give_back = _trimmer()
# One per process: every endpoint's large documents count against the same budget.
LARGE_WORK = CyclePacer()


def freeze_startup_heap() -> None:
    """Moves what the process made while starting (modules, schemas, clients: tens of
    thousands of objects that live as long as it does) out of the collector's reach.

    Every full collection walked them all: in the query side under load a full collection
    took ~60 ms, 25 of them in 15 s, and they were its p99 (66 ms; 12 ms once frozen, its
    full collections 2-6 ms). What is frozen is never collected, so this runs once, after
    start-up, when nothing frozen is garbage.
    """
    gc.collect()
    gc.freeze()
