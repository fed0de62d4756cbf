"""A minimal HTTP/1.1 load generator for the GraphQL command endpoint.

Run as a process of its own (`python -m bench.loadgen CONFIG_JSON`), so that its CPU never
shares an interpreter with the service; it prints one JSON object with what it saw. Each client
holds one keep-alive connection and sends one request at a time. Requests are pre-encoded:
every id has a fixed width, so every body of a kind has the same length and the head (with its
Content-Length) is encoded once; a body is a few bytes formatted into a template. Responses are
framed by Content-Length. Standard library only (plus uvloop when installed).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any

ONE = "mutation($input: InteractionInput!){recordInteraction(input: $input){position duplicate}}"
MANY = (
    "mutation($inputs: [InteractionInput!]!)"
    "{recordInteractions(inputs: $inputs){position duplicate}}"
)


@dataclass(frozen=True)
class LoadConfig:
    port: int
    clients: int
    duration: float
    warmup: float
    batch: int = 0  # 0: recordInteraction; N: recordInteractions with N inputs
    pool: int = 10_000
    run_id: str = "run"
    occurred_at: str = "2026-01-01T00:00:00+00:00"
    host: str = "127.0.0.1"
    path: str = "/commands/graphql"
    request_timeout: float = 10.0  # a service that stops answering must not stall the run


class Requests:
    """Request bytes for one client: unique eventIds, customers drawn from the pool."""

    def __init__(self, config: LoadConfig, client: int) -> None:
        if config.pool > 100_000 or config.clients > 100:
            raise ValueError("ids are fixed width: pool <= 100,000 and clients <= 100")
        self.config = config
        self.client = client
        self.sequence = 0
        self.rng = random.Random(client)
        self.item = (
            b'{"eventId":"' + config.run_id.encode() + b'-%02d-%09d","customerId":"c%05d",'
            b'"type":"product_view","occurredAt":"' + config.occurred_at.encode() + b'",'
            b'"sessionId":"s%05d","channel":"web","properties":{"sku":"SKU-%05d",'
            b'"price":19.99,"currency":"EUR","path":"/p/%05d"}}'
        )
        query, key = (MANY, "inputs") if config.batch else (ONE, "input")
        self.prefix = (
            b'{"query":' + json.dumps(query).encode() + b',"variables":{"' + key.encode() + b'":'
        )
        self.size = len(self.body())
        self.head = (
            b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n"
            % (config.path.encode(), config.host.encode(), config.port, self.size)
        )

    def _one(self) -> bytes:
        self.sequence += 1
        customer = self.rng.randrange(self.config.pool)
        sku = self.rng.randrange(100_000)
        return self.item % (self.client, self.sequence, customer, sku, sku, sku)

    def body(self) -> bytes:
        if not self.config.batch:
            return self.prefix + self._one() + b"}}"
        items = b",".join([self._one() for _ in range(self.config.batch)])
        return self.prefix + b"[" + items + b"]}}"

    def next(self) -> bytes:
        body = self.body()
        assert len(body) == self.size, "a fixed-width field overflowed"
        return self.head + body


@dataclass
class Tally:
    ok: int = 0
    errors: int = 0
    timeouts: int = 0
    duplicates: int = 0
    latencies: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(text[:400])


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, server closes) of one response framed by Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length: int | None = None
    closes = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            closes = True
    if length is None:
        raise ValueError(f"response without Content-Length: {head[:200]!r}")
    return status, await reader.readexactly(length), closes


async def client(config: LoadConfig, index: int, window: tuple[float, float], tally: Tally) -> None:
    requests = Requests(config, index)
    expected = config.batch or 1
    reader, writer = await asyncio.open_connection(config.host, config.port)
    try:
        while (begun := time.perf_counter()) < window[1]:
            try:
                writer.write(requests.next())
                response = read_response(reader)
                status, body, closes = await asyncio.wait_for(response, config.request_timeout)
            except TimeoutError:
                tally.timeouts += 1
                tally.error(f"no response within {config.request_timeout:.0f}s; client stopped")
                return
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                tally.error(f"{type(error).__name__}: {error}")
                writer.close()
                reader, writer = await asyncio.open_connection(config.host, config.port)
                continue
            done = time.perf_counter()
            if closes:
                writer.close()
                reader, writer = await asyncio.open_connection(config.host, config.port)
            if not window[0] <= done <= window[1]:
                continue
            if status != 200 or b'"errors"' in body or body.count(b'"position"') != expected:
                tally.error(f"HTTP {status}: {body.decode(errors='replace')}")
                continue
            tally.ok += 1
            tally.duplicates += body.count(b'"duplicate":true')
            tally.latencies.append(done - begun)
    finally:
        writer.close()


async def run(config: LoadConfig) -> dict[str, Any]:
    tally = Tally()
    cpu = time.process_time()
    start = time.perf_counter() + config.warmup
    window = (start, start + config.duration)
    await asyncio.gather(*(client(config, i, window, tally) for i in range(config.clients)))
    latencies = sorted(tally.latencies)
    result = asdict(tally)
    del result["latencies"]
    result.update(
        {
            "seconds": config.duration,
            "requests_per_second": tally.ok / config.duration,
            "interactions_per_second": tally.ok * (config.batch or 1) / config.duration,
            "p50_ms": _rank(latencies, 50) * 1000,
            "p90_ms": _rank(latencies, 90) * 1000,
            "p99_ms": _rank(latencies, 99) * 1000,
            "max_ms": (latencies[-1] if latencies else float("nan")) * 1000,
            "loadgen_cores": (time.process_time() - cpu) / (config.warmup + config.duration),
        }
    )
    return result


def _rank(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5))) - 1]


def _run_loop(main: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


if __name__ == "__main__":
    settings = LoadConfig(**json.loads(sys.argv[1]))
    print(json.dumps(_run_loop(run(settings))), flush=True)
