"""The query side's same-run limit: the Redis reads of a profile read, and nothing else.

python -m bench.bare_query PORT   (REDIS_URL and PROFILES_REDIS_NAMESPACE from the environment)

    GET  /profile?id=CUSTOMER               one profile, through redis.asyncio
    POST /profiles {"ids": [...]}           a batch, in the same script calls
    GET  /raw/profile?id=CUSTOMER           the same script call as raw RESP (hiredis alone)
    POST /raw/profiles {"ids": [...]}
    GET  /healthz

A bare Starlette app on uvicorn (uvloop + httptools, as `bench.server` runs the service)
making the service's own read: calls of `projections.profile_queries.READ`, the script
`ProfileQueries.get_many` calls, one per CHUNK ids as it calls it, with the same keys (the
version pointer, the in-service segment list, the definitions, and per customer the profile
hash, the newest RECENT recent items, the score hash, the pending contributions and the
segment memberships). Key names come from the project's key classes so they stay aligned;
each profile's JSON text goes back as the script put it together, unparsed: no GraphQL, no
parsing, no score valuation, no consent blanking.

/profile and /profiles: through redis.asyncio, the service's client, as the service calls it
(the limit: everything but the service's own work). /raw/profile and /raw/profiles: the same
script call as raw RESP, packed and parsed by hiredis alone on one connection every request
shares, pipelined: the cost of the Redis read without a client library above it.
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
from uuid import UUID

import hiredis
import orjson
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.server import serve
from bench.service import stop
from domain.ids import customer_uuid
from projections import profile, score, segment_keys
from projections.profile import ProfileKeys
from projections.profile_queries import CHUNK, READ
from projections.score import ScoreKeys
from projections.segment_keys import SegmentKeys
from projections.versions import FIRST, pointer_key

RECENT = 5  # the page the send-time document asks for: recentInteractions(first: 5)
JSON = "application/json"


class Keys:
    """The serving versions' key names, learnt from the pointer each read carries."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.pointer = pointer_key(namespace)
        self.versions: tuple[int, ...] = (FIRST, FIRST, FIRST)
        self._at(self.versions)

    def _at(self, versions: tuple[int, ...]) -> None:
        p, s, g = versions
        self.profiles = ProfileKeys(self.namespace, p)
        self.scores = ScoreKeys(self.namespace, s)
        self.segments = SegmentKeys(self.namespace, g)

    def script_keys(self, uids: Sequence[UUID]) -> list[str]:
        """READ's keys, in its order."""
        keys = [self.pointer, self.segments.in_service, self.segments.definitions]
        for uid in uids:
            keys += (
                self.profiles.profile(uid),
                self.profiles.recent(uid),
                self.scores.score(uid),
                self.scores.pending(uid),
                self.segments.of(uid),
            )
        return keys

    def current(self, flat: Sequence[str]) -> bool:
        """True if the read used the serving versions; else learns them (read again)."""
        pointer = dict(zip(flat[::2], flat[1::2], strict=True))
        serving = tuple(
            int(pointer.get(name) or FIRST)
            for name in (profile.NAME, score.NAME, segment_keys.NAME)
        )
        if serving == self.versions:
            return True
        self.versions = serving  # a rebuild switched
        self._at(serving)
        return False


def _found(stored: Sequence[str]) -> list[orjson.Fragment | None]:
    """Each profile's JSON text as the script put it together, sent on unparsed."""
    return [orjson.Fragment(text) if text else None for text in stored]


class Reads:
    """Through redis.asyncio, as the service reads: the registered script, called with the
    same keys and argument."""

    def __init__(self, client: Any, namespace: str) -> None:
        self.read = client.register_script(READ)
        self.keys = Keys(namespace)

    async def many(self, customer_ids: Sequence[str]) -> list[orjson.Fragment | None]:
        # By the service's chunks, all asked at once, as ProfileQueries.get_many reads.
        chunks = [customer_ids[i : i + CHUNK] for i in range(0, len(customer_ids), CHUNK)]
        parts = await asyncio.gather(*(self._chunk(chunk) for chunk in chunks))
        return [found for part in parts for found in part]

    async def _chunk(self, customer_ids: Sequence[str]) -> list[orjson.Fragment | None]:
        uids = [customer_uuid(c) for c in customer_ids]
        while True:
            pointer, _, _, *stored = await self.read(self.keys.script_keys(uids), [RECENT])
            if self.keys.current(pointer):
                return _found(stored)


def _pack(command: tuple[Any, ...]) -> bytes:
    packed: bytes = hiredis.pack_command(command)  # its stub says a 1-tuple: it takes any
    return packed


class RawReads:
    """The same script call as raw RESP: packed and parsed by hiredis on one connection that
    every request shares, pipelined (replies come back in order), with no client library
    above it: the cost of the Redis read itself."""

    def __init__(self, url: str, namespace: str) -> None:
        self.url = urlsplit(url)
        self.keys = Keys(namespace)
        self._writer: asyncio.StreamWriter | None = None
        self._waiting: deque[tuple[asyncio.Future[Any], int]] = deque()
        self._opening = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None  # reads the replies
        self.sha = ""

    async def _connection(self) -> asyncio.StreamWriter:
        async with self._opening:
            if self._writer is None:
                reader, writer = await asyncio.open_connection(self.url.hostname, self.url.port)
                loop = asyncio.get_running_loop()
                if self.url.password:
                    writer.write(_pack(("AUTH", self.url.password)))
                    self._waiting.append((loop.create_future(), 1))
                loaded: asyncio.Future[Any] = loop.create_future()
                writer.write(_pack(("SCRIPT", "LOAD", READ)))
                self._waiting.append((loaded, 1))
                self._task = loop.create_task(self._replies(reader))
                self.sha = await loaded
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
                if got == wanted:
                    self._waiting.popleft()
                    got = 0
                    if not future.done():
                        future.set_result(reply)
        for future, _ in self._waiting:
            future.set_exception(ConnectionError("Redis closed the connection"))

    async def many(self, customer_ids: Sequence[str]) -> list[orjson.Fragment | None]:
        uids = [customer_uuid(c) for c in customer_ids]
        writer = await self._connection()
        while True:
            keys = self.keys.script_keys(uids)
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._waiting.append((future, 1))
            writer.write(_pack(("EVALSHA", self.sha, len(keys), *keys, RECENT)))
            done = await future
            if isinstance(done, Exception):  # a refused call
                raise done
            pointer, _, _, *stored = done
            if self.keys.current(pointer):
                return _found(stored)


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
    pool = aioredis.BlockingConnectionPool.from_url(
        os.environ["REDIS_URL"], decode_responses=True, max_connections=64, timeout=5
    )
    namespace = os.environ["PROFILES_REDIS_NAMESPACE"]
    reads = Reads(aioredis.Redis(connection_pool=pool), namespace)
    raw = RawReads(os.environ["REDIS_URL"], namespace)
    serve(app(reads, raw), port)


if __name__ == "__main__":
    main(int(sys.argv[1]))
