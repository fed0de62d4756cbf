"""`python -m bench.paced_get CONFIG.json`: an HTTP/1.1 load client, paced or closed loop.

Paced (mode "paced"): requests are due at fixed intervals (`rate` a second) and go out on
`connections` keep-alive connections; a request whose connections are all busy waits in a
queue. Latency is measured from the time the request was due, not from when it went out, so
a stall shows in every request it held up (no coordinated omission); `service` is the time
from the send alone, for comparison.

Closed loop (mode "closed"): each connection sends its next request when the answer to the
previous one has arrived; latency is from the send.

Raw HTTP/1.1 over asyncio streams (uvloop when importable), answers framed by
Content-Length (or chunked). An answer counts as an error unless it is HTTP 200 and its body
holds none of the `bad` substrings. Each request is one of `requests` (method, path, body)
picked at random, or, for `bench.background_writes`, made by its own factory.

Prints one JSON object: latency (p50/p90/p99/max/mean ms), service, timeline (per second: n,
p50, max), sent, completed, errors, error_examples, achieved_per_second (answers a second;
paced: until the last answer, so a service that falls behind shows below the pace),
backlog_max, client_cores.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.common import latency_summary

Make = Callable[[random.Random, int], bytes]  # (rng, sequence number) -> a whole request


@dataclass
class PacedConfig:
    port: int
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    mode: str = "paced"  # or "closed"
    rate: float = 1_000.0  # requests a second (paced)
    connections: int = 32
    duration: float = 10.0  # measured seconds
    warmup: float = 1.0  # seconds sent but not measured, before
    timeout: float = 10.0  # per request
    bad: list[str] = field(default_factory=list)
    seed: int = 1
    host: str = "127.0.0.1"


def request_bytes(host: str, method: str, path: str, body: str | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    if body is None:
        return (head + "\r\n").encode()
    data = body.encode()
    return (
        head + f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data


class ProtocolError(Exception):
    pass


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def ask(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at >= 0:
            end = lower.index(b"\r\n", at + 2)
            body = await self.reader.readexactly(int(lower[at + 17 : end]))
        elif b"\r\ntransfer-encoding: chunked" in lower:
            body = await self._chunked()
        else:
            raise ProtocolError(f"an answer with neither length nor chunks: {head[:200]!r}")
        if b"\r\nconnection: close" in lower:
            self.close()
        return status, body

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


FAILED = (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
          ProtocolError, ValueError)  # fmt: skip


@dataclass
class Tally:
    bad: Sequence[bytes]
    latency: list[float] = field(default_factory=list)  # from due (paced) or send (closed)
    service: list[float] = field(default_factory=list)  # from send
    at: list[float] = field(default_factory=list)  # due (paced) or sent, from the measured start
    completed: int = 0
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)
    last_done: float = 0.0  # perf_counter of the last measured answer

    def judge(self, status: int, body: bytes) -> str | None:
        if status != 200:
            return f"HTTP {status}: {body[:300]!r}"
        for bad in self.bad:
            if bad in body:
                return f"{bad.decode()!r} in {body[:300]!r}"
        return None

    def record(
        self, start: float, sent: float, done: float, measured: float, failed: str | None
    ) -> None:
        """One measured answer: latency from `start` (due time, or the send), service time
        from the send, its place on the timeline from `measured` (the end of the warm-up)."""
        self.completed += 1
        self.last_done = max(self.last_done, done)
        self.latency.append(done - start)
        self.at.append(start - measured)
        self.service.append(done - sent)
        if failed is not None:
            self.error(failed)

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_examples) < 5:
            self.error_examples.append(text)


async def exchange(conn: Connection, request: bytes, tally: Tally, timeout: float) -> str | None:
    """One request and its answer; the error, if any (the connection is then closed)."""
    try:
        async with asyncio.timeout(timeout):
            status, body = await conn.ask(request)
    except FAILED as failed:
        conn.close()
        return repr(failed)
    return tally.judge(status, body)


async def paced(config: PacedConfig, make: Make, stopping: asyncio.Event) -> dict[str, Any]:
    rng = random.Random(config.seed)
    tally = Tally([b.encode() for b in config.bad])
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    start = time.perf_counter() + 0.2
    measured = start + config.warmup
    total = int((config.warmup + config.duration) * config.rate)

    async def worker() -> None:
        conn = Connection(config.host, config.port)
        while (item := await queue.get()) is not None:
            due, request = item
            sent = time.perf_counter()
            failed = await exchange(conn, request, tally, config.timeout)
            done = time.perf_counter()
            if due < measured:
                continue
            tally.record(due, sent, done, measured, failed)
        conn.close()

    workers = [asyncio.create_task(worker()) for _ in range(config.connections)]
    sent, backlog = 0, 0
    while sent < total and not stopping.is_set():
        now = time.perf_counter()
        due_now = min(total, int((now - start) * config.rate) + 1) if now >= start else 0
        while sent < due_now:
            queue.put_nowait((start + sent / config.rate, make(rng, sent)))
            sent += 1
        backlog = max(backlog, queue.qsize())
        if sent < total:
            pause = start + sent / config.rate - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)  # a stop is seen within one interval
    ended = time.perf_counter()
    for _ in workers:
        queue.put_nowait(None)
    done, _pending = await asyncio.wait(workers, timeout=config.timeout + 5)
    unanswered = sum(1 for w in workers if w not in done)
    for task in workers:
        task.cancel()
    # Until the last answer: a service that falls behind answers below the pace it was sent.
    seconds = max(ended, tally.last_done) - measured
    sent_measured = max(0, sent - int(config.warmup * config.rate))
    return {
        **_result(tally, seconds),
        "sent": sent_measured,
        "unanswered_connections": unanswered,
        "asked_per_second": config.rate,
        "backlog_max": backlog,
    }


async def closed(config: PacedConfig, make: Make, stopping: asyncio.Event) -> dict[str, Any]:
    tally = Tally([b.encode() for b in config.bad])
    start = time.perf_counter()
    measured = start + config.warmup
    end = measured + config.duration

    async def worker(n: int) -> None:
        rng = random.Random(config.seed * 1_000 + n)
        conn = Connection(config.host, config.port)
        count = 0
        while (sent := time.perf_counter()) < end and not stopping.is_set():
            failed = await exchange(conn, make(rng, count), tally, config.timeout)
            count += 1
            done = time.perf_counter()
            if sent < measured or done > end:
                continue
            tally.record(sent, sent, done, measured, failed)
        conn.close()

    await asyncio.gather(*(worker(n) for n in range(config.connections)))
    seconds = min(time.perf_counter(), end) - measured
    return {**_result(tally, seconds), "sent": tally.completed}


def timeline(at: Sequence[float], latency: Sequence[float]) -> list[dict[str, float]]:
    """Per measured second (by due or send time): requests, p50 and max latency (ms), to
    tell a stall from a steady queue."""
    seconds: dict[int, list[float]] = {}
    for when, took in zip(at, latency, strict=True):
        seconds.setdefault(int(when), []).append(took)
    rows = []
    for n, values in sorted(seconds.items()):
        summary = latency_summary(values)
        rows.append({"second": float(n), "n": summary["n"], "p50_ms": summary["p50_ms"],
                     "max_ms": summary["max_ms"]})  # fmt: skip
    return rows


def _result(tally: Tally, seconds: float) -> dict[str, Any]:
    return {
        "latency": latency_summary(tally.latency),
        "timeline": timeline(tally.at, tally.latency),
        "service": latency_summary(tally.service),
        "completed": tally.completed,
        "errors": tally.errors,
        "error_examples": tally.error_examples,
        "seconds": seconds,
        "achieved_per_second": tally.completed / seconds if seconds > 0 else float("nan"),
    }


def drive(config: PacedConfig, make: Make) -> dict[str, Any]:
    """Runs the load in this process (uvloop if importable); stops early on SIGTERM/SIGINT."""

    async def main() -> dict[str, Any]:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        run = paced if config.mode == "paced" else closed
        used = resource.getrusage(resource.RUSAGE_SELF)
        began = time.perf_counter()
        result = await run(config, make, stopping)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime
        return {**result, "mode": config.mode, "connections": config.connections,
                "client_cores": cpu / (time.perf_counter() - began)}  # fmt: skip

    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


def run_client(module: str, config: Any, timeout: float) -> dict[str, Any]:
    """`python -m MODULE CONFIG.json` (a load client of this kind) and what it printed."""
    from bench.service import ROOT, child_env

    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="bench-load-") as file:
        json.dump(asdict(config), file)
        file.flush()
        done = subprocess.run(
            [sys.executable, "-m", module, file.name],
            cwd=ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{module} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run_paced(config: PacedConfig) -> dict[str, Any]:
    return run_client("bench.paced_get", config, config.warmup + config.duration + 120)


def main(path: str) -> None:
    config = PacedConfig(**json.loads(Path(path).read_text()))
    prepared = [request_bytes(config.host, m, p, b) for m, p, b in config.requests]

    def pick(rng: random.Random, n: int) -> bytes:
        return prepared[rng.randrange(len(prepared))]

    print(json.dumps(drive(config, pick)))


if __name__ == "__main__":
    main(sys.argv[1])
