"""Garbage-collector settings: for writer processes, and for batch work (rebuilds, catch-up).

A page of 5,000 events makes hundreds of thousands of short-lived, acyclic objects (decoded
events, ops, tuples). With the default threshold (a young collection every 700 allocations)
the collector ran thousands of times per page and, as the heap grew, its older generations
were walked again and again: a fifth to a third of a rebuild's time on one core
(200,606 events: 7,675/s with the defaults, 11,679/s with these). Reference counting frees
all of that anyway; the collector is only for cycles, which this work hardly makes.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

YOUNG = 50_000  # allocations between young collections (default 700)
OLDER = (50, 1_000)  # young collections per middle one, middle ones per full one (10, 10)


def tune_for_writers() -> None:
    """For a process that writes through a long-lived application (commands, ingest).

    Cached aggregates are long-lived: collecting the oldest generation as often as the
    default allows rescans all of them. In `profiles ingest` that was ~17 us of a message's
    ~65 us of CPU (mostly full collections); in the commands service it showed as tail
    latency. Almost everything the write path allocates is freed by reference counting, so
    collections this rare still find the few cycles it leaves.
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
