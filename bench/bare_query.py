"""The query side's same-run limit: the Redis reads of a profile read, and nothing else.

python -m bench.bare_query PORT   (REDIS_URL and PROFILES_REDIS_NAMESPACE from the environment)

    GET  /profile?id=CUSTOMER               one profile, through redis.asyncio
    POST /profiles {"ids": [...]}           a batch, in the same one transaction
    GET  /raw/profile?id=CUSTOMER           the same transaction as raw RESP (hiredis alone)
    POST /raw/profiles {"ids": [...]}
    GET  /healthz

A bare Starlette app on uvicorn (uvloop + httptools, as `bench.server` runs the service)
making the service's own read: the transaction `ProfileQueries.get_many` sends
(`projections.profile_queries.read_transaction`: the version pointer, the in-service segment
list, and per customer the profile hash, the newest RECENT recent items, the score hash, the
pending contributions and the segment memberships), with the same keys. Each customer's
replies go back as Redis gave them, unread: no GraphQL, no parsing of the stored JSON, no
score valuation, no consent blanking.

/profile and /profiles: through redis.asyncio on the service's own connections
(`adapters.hiredis_connections`), as the service reads (the limit: everything but the
service's own work). /raw/profile and /raw/profiles: the same transaction as raw RESP,
packed and parsed by hiredis alone on one connection every request shares, pipelined: the
cost of the Redis read without a client library above it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import hiredis
import orjson
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.hiredis_connections import EXEC, MULTI, Transactions, pack, pack_with_hiredis
from bench.server import serve
from bench.service import stop
from projections import profile, score, segment_keys
from projections.profile_queries import HEAD, read_transaction
from projections.versions import ServingVersions

RECENT = 5  # the page the send-time document asks for: recentInteractions(first: 5)
JSON = "application/json"
READS = (profile.NAME, score.NAME, segment_keys.NAME)  # in the order read_transaction takes


class Keys:
    """The serving versions, learnt from the pointer each read carries."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.versions = ServingVersions(namespace)

    def transaction(self, customer_ids: Sequence[str]) -> tuple[bytes, int]:
        """The service's own read (`read_transaction`) at the versions last seen serving."""
        versions = [self.versions.serving(name) for name in READS]
        return read_transaction(self.namespace, versions, customer_ids, RECENT)

    def current(self, pointer: dict[str, str] | list[str]) -> bool:
        """True if the read used the serving versions; else learns them (read again)."""
        if isinstance(pointer, list):  # RESP2's flat field, value, ...
            pointer = dict(zip(pointer[::2], pointer[1::2], strict=True))
        return self.versions.confirm(pointer, READS)


def _found(replies: list[Any], customers: int) -> list[list[Any] | None]:
    """Each customer's five replies as Redis gave them, sent on unread ("none" where the
    profile hash is empty); the pointer and the in-service list come first."""
    return [
        replies[at : at + 5] if replies[at] else None for at in range(HEAD, HEAD + 5 * customers, 5)
    ]


class Reads:
    """Through redis.asyncio, as the service reads: its transaction on a pool of the service's
    own connections (`adapters.hiredis_connections`, RESP3)."""

    def __init__(self, pool: Any, namespace: str) -> None:
        self.transactions = Transactions(pool, 5.0)
        self.keys = Keys(namespace)

    async def many(self, customer_ids: Sequence[str]) -> list[list[Any] | None]:
        while True:
            packed, count = self.keys.transaction(customer_ids)
            replies = await self.transactions.run(packed, count)
            if self.keys.current(replies[0]):
                return _found(replies, len(customer_ids))


class RawReads:
    """The same transaction as raw RESP: packed and parsed by hiredis on one connection that
    every request shares, pipelined (replies come back in order), with no client library
    above it: the cost of the Redis read itself."""

    def __init__(self, url: str, namespace: str) -> None:
        self.url = urlsplit(url)
        self.keys = Keys(namespace)
        self._writer: asyncio.StreamWriter | None = None
        self._waiting: deque[tuple[asyncio.Future[Any], int]] = deque()
        self._opening = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None  # reads the replies

    async def _connection(self) -> asyncio.StreamWriter:
        async with self._opening:
            if self._writer is None:
                reader, writer = await asyncio.open_connection(self.url.hostname, self.url.port)
                loop = asyncio.get_running_loop()
                if self.url.password:
                    writer.write(pack([("AUTH", self.url.password)]))
                    self._waiting.append((loop.create_future(), 1))
                self._task = loop.create_task(self._replies(reader))
                self._writer = writer
        return self._writer

    async def _replies(self, reader: asyncio.StreamReader) -> None:
        parser = hiredis.Reader(encoding="utf-8")
        got = 0
        while chunk := await reader.read(1 << 20):
            parser.feed(chunk)
            while (reply := parser.gets()) is not False:
                got += 1
                future, wanted = self._waiting[0]
                if got == wanted:  # a transaction's last reply, EXEC's: all of its replies
                    self._waiting.popleft()
                    got = 0
                    if not future.done():
                        future.set_result(reply)
        for future, _ in self._waiting:
            future.set_exception(ConnectionError("Redis closed the connection"))

    async def many(self, customer_ids: Sequence[str]) -> list[list[Any] | None]:
        writer = await self._connection()
        while True:
            packed, count = self.keys.transaction(customer_ids)
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._waiting.append((future, count + 2))  # MULTI's OK, QUEUED each, EXEC's
            writer.write(MULTI + packed + EXEC)
            done = await future
            if not isinstance(done, list):  # a refused transaction
                raise RuntimeError(f"EXEC answered {done!r}")
            if self.keys.current(done[0]):
                return _found(done, len(customer_ids))


def app(reads: Reads, raw: RawReads) -> Starlette:
    def one(source: Reads | RawReads) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            customer = request.query_params.get("id")
            if not customer:
                return Response(b'{"error":"send ?id=CUSTOMER"}', 400, media_type=JSON)
            (found,) = await source.many([customer])
            return Response(orjson.dumps({"profile": found}), media_type=JSON)

        return answer

    def batch(source: Reads | RawReads) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            ids = orjson.loads(await request.body()).get("ids")
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                return Response(b'{"error":"send {\\"ids\\": [...]}"}', 400, media_type=JSON)
            found = await source.many(ids)
            return Response(orjson.dumps({"profiles": found}), media_type=JSON)

        return answer

    async def healthz(request: Request) -> Response:
        return Response(b"ok", media_type="text/plain")

    return Starlette(
        routes=[
            Route("/profile", one(reads), methods=["GET"]),
            Route("/profiles", batch(reads), methods=["POST"]),
            Route("/raw/profile", one(raw), methods=["GET"]),
            Route("/raw/profiles", batch(raw), methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


class BareEndpoint:
    """`python -m bench.bare_query PORT` in a process of its own, with `env` (REDIS_URL and
    PROFILES_REDIS_NAMESPACE); ready (/healthz answered) on creation, stopped on exit."""

    def __init__(self, env: dict[str, str], start_timeout: float = 30.0) -> None:
        from bench.service import ROOT, free_port

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "bench.bare_query", str(self.port)]
        self.process = subprocess.Popen(command, cwd=ROOT, env=env)
        deadline = time.monotonic() + start_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"bench.bare_query exited with code {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:  # URLError is one
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"bench.bare_query did not answer within {start_timeout:.0f}s")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        stop(self.process, 5.0)

    def __enter__(self) -> BareEndpoint:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(port: int) -> None:
    pool = pack_with_hiredis(
        aioredis.BlockingConnectionPool.from_url(
            os.environ["REDIS_URL"],
            decode_responses=True,
            protocol=3,
            max_connections=64,
            timeout=5,
            socket_timeout=5,
        )
    )
    namespace = os.environ["PROFILES_REDIS_NAMESPACE"]
    reads = Reads(pool, namespace)
    raw = RawReads(os.environ["REDIS_URL"], namespace)
    serve(app(reads, raw), port)


if __name__ == "__main__":
    main(int(sys.argv[1]))
