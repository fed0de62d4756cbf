"""Concurrent reads share round trips, and each caller gets exactly its own answers."""

from __future__ import annotations

import asyncio

import pytest

from projections.coalescing import Coalescing


class GatedReads:
    """A read that waits until the test opens its gate, and records what each call asked."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.calls: list[tuple[list[str], int]] = []
        self.gate = asyncio.Event()
        self.fail_with = fail_with

    async def __call__(self, ids: list[str], param: int) -> list[str]:
        self.calls.append((ids, param))
        await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return [f"{i}@{param}" for i in ids]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_callers_arriving_while_reads_are_out_share_the_next_read() -> None:
    async def scenario() -> None:
        reads = GatedReads()
        coalescing = Coalescing(reads, limit=1)
        first = asyncio.create_task(coalescing.read(["a"], 5))
        await settle()
        later = [asyncio.create_task(coalescing.read([c, c + "2"], 5)) for c in "bcd"]
        await settle()
        assert reads.calls == [(["a"], 5)]  # the others wait for the read that is out
        reads.gate.set()
        assert await first == ["a@5"]
        answers = await asyncio.gather(*later)
        assert answers == [[f"{c}@5", f"{c}2@5"] for c in "bcd"]
        assert reads.calls == [(["a"], 5), (["b", "b2", "c", "c2", "d", "d2"], 5)]

    asyncio.run(scenario())


def test_a_read_starts_at_once_while_fewer_than_the_limit_are_out() -> None:
    async def scenario() -> None:
        reads = GatedReads()
        coalescing = Coalescing(reads, limit=2)
        tasks = [asyncio.create_task(coalescing.read([c], 1)) for c in "ab"]
        await settle()
        assert reads.calls == [(["a"], 1), (["b"], 1)]
        reads.gate.set()
        assert await asyncio.gather(*tasks) == [["a@1"], ["b@1"]]

    asyncio.run(scenario())


def test_different_params_and_the_size_cap_make_separate_reads() -> None:
    async def scenario() -> None:
        reads = GatedReads()
        coalescing = Coalescing(reads, limit=1, most=3)
        first = asyncio.create_task(coalescing.read(["x"], 1))
        await settle()
        waiting = [
            asyncio.create_task(coalescing.read(["a", "b"], 1)),
            asyncio.create_task(coalescing.read(["c", "d"], 1)),  # over 3 with a, b
            asyncio.create_task(coalescing.read(["e"], 10)),
        ]
        await settle()
        reads.gate.set()
        await first
        assert await asyncio.gather(*waiting) == [["a@1", "b@1"], ["c@1", "d@1"], ["e@10"]]
        assert sorted(reads.calls[1:]) == [(["a", "b"], 1), (["c", "d"], 1), (["e"], 10)]

    asyncio.run(scenario())


def test_a_failed_shared_read_fails_every_caller_that_shared_it() -> None:
    async def scenario() -> None:
        reads = GatedReads(fail_with=ConnectionError("redis went away"))
        coalescing = Coalescing(reads, limit=1)
        first = asyncio.create_task(coalescing.read(["a"], 1))
        await settle()
        later = [asyncio.create_task(coalescing.read([c], 1)) for c in "bc"]
        await settle()
        reads.gate.set()
        for task in (first, *later):
            with pytest.raises(ConnectionError, match="redis went away"):
                await task

    asyncio.run(scenario())


def test_a_cancelled_waiter_leaves_the_others_their_answers() -> None:
    async def scenario() -> None:
        reads = GatedReads()
        coalescing = Coalescing(reads, limit=1)
        first = asyncio.create_task(coalescing.read(["a"], 1))
        await settle()
        gone = asyncio.create_task(coalescing.read(["b"], 1))
        kept = asyncio.create_task(coalescing.read(["c"], 1))
        await settle()
        gone.cancel()
        reads.gate.set()
        assert await first == ["a@1"]
        assert await kept == ["c@1"]
        assert gone.cancelled()
        assert reads.calls[-1] == (["c"], 1)  # the cancelled caller's id was not read

    asyncio.run(scenario())
