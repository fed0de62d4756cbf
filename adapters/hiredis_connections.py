"""redis.asyncio connections that let hiredis do the work in C: packing commands, and reading
the replies of a whole transaction.

redis-py's synchronous connections pack commands with hiredis; its asyncio ones pack them in
Python, argument by argument (a 2,500-key read: 1.6 ms, 0.39 ms with hiredis). And it reads
each reply through several layers of coroutines, each with its own timeout: the 2,502
replies of a `profiles(500)` transaction cost the service 54 us of CPU a profile that way,
16 us when the connection's hiredis reader is asked for reply after reply and the socket is
read only when it has none; about half of that is the parse itself, hiredis making the
Python objects (measured by hand, on a slow hour of the bench's host). The connection class
a pool chose for its URL (TCP, TLS or a Unix socket) keeps everything else: connecting,
AUTH, SELECT, health checks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import hiredis
from redis._parsers.hiredis import NOT_ENOUGH_DATA
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Command = tuple[Any, ...]


def pack_with_hiredis(pool: ConnectionPool) -> ConnectionPool:
    """`pool`, its future connections packing commands with hiredis and able to read a
    transaction's replies in C (`Transactions`)."""
    base = pool.connection_class
    packer = HiredisRespSerializer()

    def pack_command(self: AbstractConnection, *args: Any) -> list[bytes]:
        packed: list[bytes] = packer.pack(*args)
        return packed

    async def read_replies(self: AbstractConnection, count: int) -> list[Any]:
        # The parser's own hiredis reader (private to redis-py, as is the marker it answers
        # while a reply is incomplete): redis-py picks the hiredis parser whenever hiredis is
        # installed (our dependency, `redis[hiredis]`); tests read real transactions here.
        parser: Any = self._parser
        reader = parser._reader
        replies: list[Any] = []
        while len(replies) < count:
            reply = reader.gets()
            if reply is NOT_ENOUGH_DATA:
                await parser.read_from_socket()
            else:
                replies.append(reply)
        return replies

    pool.connection_class = type(
        f"Hiredis{base.__name__}",
        (base,),
        {"pack_command": pack_command, "read_replies": read_replies},
    )
    return pool


@lru_cache(maxsize=4)
def _packed(command: Command) -> bytes:
    packed: bytes = hiredis.pack_command(command)  # its stub says a 1-tuple: it takes any
    return packed


MULTI, EXEC = _packed(("MULTI",)), _packed(("EXEC",))


def pack(commands: Sequence[Command]) -> bytes:
    """Commands as they go on the wire, for `Transactions.run` (callers cache what repeats)."""
    return b"".join(hiredis.pack_command(c) for c in commands)


class Transactions:
    """MULTI, pre-packed commands, EXEC on one of the pool's connections: atomic, as a script
    would be, without Lua (a script converts every reply into Lua strings and its answer back,
    about twice what Redis spends on the commands themselves).

    One attempt more on another connection if the first one turns out dead; every attempt
    within `timeout` seconds in all (a frozen server answers nothing)."""

    def __init__(self, pool: ConnectionPool, timeout: float) -> None:
        self.pool: Any = pool  # its get_connection is untyped
        self._timeout = timeout

    async def run(self, packed: bytes, count: int) -> list[Any]:
        """The replies of the `count` commands in `packed` (from `pack`)."""
        try:
            async with asyncio.timeout(self._timeout):
                try:
                    return await self._attempt(packed, count)
                except RedisConnectionError:
                    return await self._attempt(packed, count)
        except TimeoutError:
            raise RedisTimeoutError(f"Redis did not answer within {self._timeout:g} s") from None

    async def _attempt(self, packed: bytes, count: int) -> list[Any]:
        connection: Any = await self.pool.get_connection()
        try:
            await connection.send_packed_command(MULTI + packed + EXEC, check_health=False)
            replies = await connection.read_replies(count + 2)
        except BaseException:
            # Replies may still be on their way: nobody else may read them as theirs.
            await connection.disconnect(nowait=True)
            raise
        finally:
            await self.pool.release(connection)
        done = replies[-1]
        if isinstance(done, ResponseError):  # EXECABORT: a command was refused when queued
            queued = next((r for r in replies[1:-1] if isinstance(r, ResponseError)), done)
            raise queued
        if not isinstance(done, list) or len(done) != count:
            raise ResponseError(f"EXEC answered {type(done).__name__}, not {count} replies")
        for reply in done:
            if isinstance(reply, ResponseError):
                raise reply
        return done
