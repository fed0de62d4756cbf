"""Concurrent reads that share one round trip: the DataLoader idea, across requests.

At send time many requests each ask for one profile at once. Each read costs the Redis
client about as much CPU as the read itself (a connection from the pool, packing, parsing,
a deadline), so while `limit` reads are out, later callers wait and go together in the next
read (one per `recent` value, up to `most` ids). When Redis keeps up, nobody waits: a read
starts at once whenever fewer than `limit` are out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
Read = Callable[[list[str], int], Awaitable[list[T]]]
Ask = tuple[list[str], "asyncio.Future[list[T]]"]


class Coalescing(Generic[T]):
    def __init__(self, read: Read[T], *, limit: int = 2, most: int = 500) -> None:
        self._read = read
        self._limit = limit
        self._most = most
        self._out = 0
        self._waiting: dict[int, list[Ask[T]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def read(self, ids: Sequence[str], param: int) -> list[T]:
        """What `read(ids, param)` answers, perhaps read together with other callers' ids."""
        if self._out < self._limit:
            self._out += 1
            try:
                return await self._read(list(ids), param)
            finally:
                self._out -= 1
                self._start_waiting()
        future: asyncio.Future[list[T]] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(param, []).append((list(ids), future))
        return await future

    def _start_waiting(self) -> None:
        while self._waiting and self._out < self._limit:
            param = next(iter(self._waiting))
            queue = self._waiting[param]
            taken: list[Ask[T]] = []
            count = 0
            while queue and (not taken or count + len(queue[0][0]) <= self._most):
                ids, future = queue.pop(0)
                taken.append((ids, future))
                count += len(ids)
            if not queue:
                del self._waiting[param]
            self._out += 1
            task = asyncio.get_running_loop().create_task(self._serve(param, taken))
            self._tasks.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(self._tasks.discard)

    async def _serve(
        self, param: int, asks: list[tuple[list[str], asyncio.Future[list[T]]]]
    ) -> None:
        try:
            live = [(ids, future) for ids, future in asks if not future.done()]  # not cancelled
            if not live:
                return
            try:
                found = await self._read([i for ids, _ in live for i in ids], param)
            except asyncio.CancelledError:
                for _, future in live:
                    future.cancel()
                raise
            except Exception as error:
                for _, future in live:
                    if not future.done():
                        future.set_exception(error)
                return
            at = 0
            for ids, future in live:
                if not future.done():
                    future.set_result(found[at : at + len(ids)])
                at += len(ids)
        finally:
            self._out -= 1
            self._start_waiting()
