"""Command packing in C for redis.asyncio's connections.

redis-py's synchronous connections pack commands with hiredis; its asyncio ones pack them in
Python, argument by argument. A `profiles` read sends one command of ~2,500 keys: packing
it was ~6% of the query side's CPU (py-spy, `bench --only query`). The connection class a
pool chose for its URL (TCP, TLS or a Unix socket) keeps everything else.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.connection import HiredisRespSerializer


def pack_with_hiredis(pool: ConnectionPool) -> ConnectionPool:
    """`pool`, its future connections packing commands with hiredis."""
    base = pool.connection_class
    packer = HiredisRespSerializer()

    def pack_command(self: AbstractConnection, *args: Any) -> list[bytes]:
        packed: list[bytes] = packer.pack(*args)
        return packed

    pool.connection_class = type(f"Hiredis{base.__name__}", (base,), {"pack_command": pack_command})
    return pool
