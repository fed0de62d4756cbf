"""Commands packed by hiredis go on the wire exactly as redis-py's own packing sends them."""

from __future__ import annotations

import redis.asyncio as aioredis

from adapters.redis_packing import pack_with_hiredis

COMMANDS: list[tuple[object, ...]] = [
    ("EVALSHA", "f" * 40, 3, "k:{a}", "k:{b}", "ключ", 5),
    ("CLIENT SETNAME", "profiles-query"),  # a two-word command name, as redis-py sends it
    ("HSET", "h", "field", 1.5, "n", -7),
    ("SET", b"bytes\x00key", b"\xff\xfe"),
]


def test_hiredis_packing_sends_the_bytes_redis_py_sends() -> None:
    plain = aioredis.ConnectionPool.from_url("redis://127.0.0.1:1/0")
    packed = pack_with_hiredis(aioredis.ConnectionPool.from_url("redis://127.0.0.1:1/0"))
    python_connection = plain.connection_class(**plain.connection_kwargs)
    hiredis_connection = packed.connection_class(**packed.connection_kwargs)
    assert type(hiredis_connection) is not type(python_connection)
    for command in COMMANDS:
        expected = b"".join(python_connection.pack_command(*command))
        assert b"".join(hiredis_connection.pack_command(*command)) == expected, command


def test_the_pool_keeps_the_connection_class_its_url_chose() -> None:
    pool = pack_with_hiredis(aioredis.ConnectionPool.from_url("unix:///tmp/valkey.sock"))
    assert issubclass(pool.connection_class, aioredis.UnixDomainSocketConnection)
    tls = pack_with_hiredis(aioredis.ConnectionPool.from_url("rediss://127.0.0.1:1/0"))
    assert issubclass(tls.connection_class, aioredis.SSLConnection)
