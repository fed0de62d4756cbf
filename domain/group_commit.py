"""Group commit: many concurrent callers, one transaction per round.

The events table is written under a table lock, so a commit per command caps throughput at a
few thousand per second however many clients wait. One thread takes whatever units queued up
while the previous transaction ran and stores them together: under load the batch grows by
itself, and a lone command still goes straight through without waiting for company.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from domain.batch import Outcome
from domain.commands import Command
from domain.errors import StoreUnavailable

# The units of one transaction, and the deadline (monotonic clock) of the soonest of them.
Execute = Callable[[Sequence[Sequence[Command]], float | None], list[Outcome]]
Observer = Callable[[int, int], None]  # (units, commands) per transaction


@dataclass
class _Pending:
    unit: Sequence[Command]
    deadline: float | None
    future: Future[Outcome] = field(default_factory=Future)


class GroupCommitter:
    def __init__(
        self,
        execute: Execute,
        *,
        max_commands: int = 1_000,
        on_batch: Observer | None = None,
        name: str = "group-commit",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._execute = execute
        self._monotonic = monotonic
        self._max_commands = max_commands
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, unit: Sequence[Command], deadline: float | None = None) -> Future[Outcome]:
        """`deadline` (on the monotonic clock): a unit still queued then is not sent; one
        being stored then is cut off (the store adapter's part)."""
        if self._closed:
            raise RuntimeError("the group committer is closed")
        pending = _Pending(unit, deadline)
        self._queue.put(pending)
        return pending.future

    def close(self, timeout: float = 10.0) -> None:
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            self._commit(batch)
            if stop:
                return

    def _gather(self, first: _Pending) -> tuple[list[_Pending], bool]:
        batch = [first]
        size = len(first.unit)
        while size < self._max_commands:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                return batch, True
            batch.append(nxt)
            size += len(nxt.unit)
        return batch, False

    def _commit(self, batch: list[_Pending]) -> None:
        live = [p for p in batch if p.future.set_running_or_notify_cancel()]
        now = self._monotonic()
        for late in [p for p in live if p.deadline is not None and p.deadline <= now]:
            # The store was too slow for the commands before it: nothing of this one was sent.
            late.future.set_exception(
                StoreUnavailable(
                    "the event store did not take this command before its deadline; nothing "
                    "was written, send it again"
                )
            )
            live.remove(late)
        if not live:
            return
        deadlines = [p.deadline for p in live if p.deadline is not None]
        try:
            outcomes = self._execute([p.unit for p in live], min(deadlines, default=None))
        except BaseException as error:  # every caller must hear why its command failed
            for p in live:
                p.future.set_exception(error)
            return
        for p, outcome in zip(live, outcomes, strict=True):
            p.future.set_result(outcome)
        if self._on_batch is not None:
            self._on_batch(len(live), sum(len(p.unit) for p in live))
