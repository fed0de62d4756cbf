"""Transactions read in C: the replies Redis gives, its refusals raised, and a connection
that failed never handed out again with replies still on their way."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from adapters.hiredis_connections import Transactions, pack, pack_with_hiredis

T = TypeVar("T")
BUSY = """
local t = redis.call('TIME')
local stop = t[1] + t[2] / 1e6 + tonumber(ARGV[1])
repeat t = redis.call('TIME') until t[1] + t[2] / 1e6 >= stop
return 1
"""


def run_with(redis_url: str, body: Callable[[Transactions, str], Awaitable[T]]) -> T:
    """`body` with transactions on a pool of one connection, and a namespace of its own."""

    async def main() -> T:
        pool = pack_with_hiredis(
            aioredis.ConnectionPool.from_url(
                redis_url, decode_responses=True, protocol=3, max_connections=1
            )
        )
        try:
            return await body(Transactions(pool, 5.0), f"t{uuid.uuid4().hex[:8]}:")
        finally:
            await pool.disconnect()

    return asyncio.run(main())


def test_a_transaction_answers_each_commands_reply_in_order(redis_url: str) -> None:
    async def body(transactions: Transactions, ns: str) -> list[Any]:
        setup = [("HSET", f"{ns}h", "a", "1", "b", "ключ"), ("ZADD", f"{ns}z", 2, "m2", 1, "m1")]
        await transactions.run(pack(setup), 2)
        reads = [
            ("HGETALL", f"{ns}h"),
            ("HGETALL", f"{ns}none"),
            ("ZREVRANGE", f"{ns}z", 0, 4),
            ("ZRANGE", f"{ns}z", 0, -1, "WITHSCORES"),
            ("GET", f"{ns}none"),
        ]
        # Many of them: the replies outgrow one socket read.
        return await transactions.run(pack(reads * 2_000), 10_000)

    replies = run_with(redis_url, body)
    assert len(replies) == 10_000
    assert replies[:5] == [
        {"a": "1", "b": "ключ"},
        {},
        ["m2", "m1"],
        [["m1", 1.0], ["m2", 2.0]],
        None,
    ]
    assert replies[-5:] == replies[:5]


def test_a_refused_command_raises_and_the_next_transaction_reads_its_own_replies(
    redis_url: str,
) -> None:
    async def body(transactions: Transactions, ns: str) -> list[str]:
        errors = []
        await transactions.run(pack([("SET", f"{ns}s", "text")]), 1)
        for refused in (
            [("HGETALL", f"{ns}s"), ("GET", f"{ns}s")],  # WRONGTYPE, when it runs
            [("GET", f"{ns}s"), ("GET",)],  # wrong arity: the whole transaction refused
        ):
            with pytest.raises(ResponseError) as raised:
                await transactions.run(pack(refused), len(refused))
            errors.append(str(raised.value))
        assert await transactions.run(pack([("GET", f"{ns}s")]), 1) == ["text"]
        return errors

    wrong_type, arity = run_with(redis_url, body)
    assert "WRONGTYPE" in wrong_type
    assert "wrong number of arguments" in arity


def test_a_transaction_cut_off_by_its_timeout_leaves_no_reply_for_the_next(
    redis_url: str,
) -> None:
    async def body(transactions: Transactions, ns: str) -> tuple[str, list[Any]]:
        await transactions.run(pack([("SET", f"{ns}s", "v")]), 1)
        slow = Transactions(transactions.pool, 0.05)
        # A script that holds the server past the timeout: its reply comes after the cut.
        with pytest.raises(redis.exceptions.TimeoutError) as raised:
            await slow.run(pack([("EVAL", BUSY, 0, 0.3), ("GET", f"{ns}s")]), 2)
        await asyncio.sleep(0.4)
        return str(raised.value), await transactions.run(pack([("GET", f"{ns}s")]), 1)

    message, after = run_with(redis_url, body)
    assert "did not answer within 0.05 s" in message
    assert after == ["v"]
