"""`abuse`: the query side's memory and a legitimate client's latency under hostile requests.

One service process (role all) is seeded through /commands/graphql, a projector process
(`profiles project`) makes the read models, and the query side (/graphql) is then read by a
legitimate ESP client at a steady pace while a hostile process (`bench/abuse_client.py`)
sends alias bombs, oversized and malformed bodies, deep nesting, introspection, and fresh
ids and fresh documents every time, from several closed-loop threads.

Every hostile answer must be HTTP 200 (data, or errors that carry extensions.code) or
400/413/429 with a coded error; a 5xx, an uncoded error or no answer is a broken promise.

The memory bound, RSS_BOUND_MB:

    RSS before the hostile phase
  + the query schema's document cache budget (PROFILES_DOCUMENT_CACHE_BYTES): the only state
    the service means to keep for what it was sent; its entries are weighed by an estimate
    that overstates a tree's size, so the cache itself stays below this
  + the cycle budget (adapters.collector.LARGE_WORK): what large documents may leave behind
    in reference cycles before the process collects them in full, again by that estimate
  + ALLOWANCE_MB: the requests in flight, HOSTILE_THREADS of them at once, each at most
    REQUEST_MB (a 1 MiB body held as bytes, text and decoded JSON, and a tree of at most
    PROFILES_MAX_TOKENS tokens), plus SLACK_MB for the interpreter's and allocator's own
    bookkeeping.

Before, peak and after are each shown beside it; "after" is taken after 10 s idle.
"""

from __future__ import annotations

import http.client
import json
import random
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

from adapters.collector import LARGE_WORK
from bench.common import Bench, latency_summary, say
from bench.report import Row, Target
from bench.scenarios import Outcome
from bench.seeding import PROFILE, projected, projector, rss_mb, seed_checked, service_env
from bench.service import ROOT, ServiceProcess, child_env, stop

MIB = 1_048_576
HOSTILE_THREADS = 6
REQUEST_MB = 16.0
SLACK_MB = 32.0
ALLOWANCE_MB = HOSTILE_THREADS * REQUEST_MB + SLACK_MB
RSS_BOUND_MB = f"RSS before + document cache + cycle budget + {ALLOWANCE_MB:.0f} MB"
LEGIT_RATE = 20.0  # requests a second
SEGMENTS = {
    "viewers": {"event": {"type": "page_view"}},
    "carters": {"event": {"type": "add_to_cart", "atLeast": 2}},
    "buyers": {"event": {"type": "purchase"}},
}


def rss_bound_mb(before_mb: float, cache_bytes: int) -> float:
    """RSS_BOUND_MB: see the module's docstring."""
    return before_mb + (cache_bytes + LARGE_WORK.budget) / MIB + ALLOWANCE_MB


class Legit:
    """One ESP client on a keep-alive connection, LEGIT_RATE profile reads a second."""

    def __init__(self, port: int, customers: list[str]) -> None:
        self.port = port
        self.customers = customers
        self.phase = "warmup"
        self.seconds: dict[str, list[float]] = {}
        self.errors: dict[str, list[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="abuse-legit", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        rng = random.Random(7)
        conn: http.client.HTTPConnection | None = None
        interval = 1 / LEGIT_RATE
        due = time.monotonic()
        while not self._stop.is_set():
            due = max(due + interval, time.monotonic())
            customer = rng.choice(self.customers)
            body = json.dumps({"query": PROFILE, "variables": {"id": customer}})
            phase = self.phase
            started = time.monotonic()
            error = None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("POST", "/graphql", body, {"content-type": "application/json"})
                response = conn.getresponse()
                answer = json.loads(response.read())
                if response.status != 200 or answer.get("errors"):
                    error = f"{response.status} {answer.get('errors')}"
                elif not answer["data"]["profile"]:
                    error = f"seeded customer {customer} read as null"
            except (OSError, http.client.HTTPException, ValueError) as failed:
                error = repr(failed)
                if conn is not None:
                    conn.close()
                conn = None
            self.seconds.setdefault(phase, []).append(time.monotonic() - started)
            if error is not None:
                self.errors.setdefault(phase, []).append(error)
            self._stop.wait(max(0.0, due - time.monotonic()))
        if conn is not None:
            conn.close()

    def summary(self, phase: str) -> dict[str, Any]:
        errors = self.errors.get(phase, [])
        return {
            **latency_summary(self.seconds.get(phase, [])),
            "errors": len(errors),
            "error_examples": errors[:3],
        }


class Sampler:
    """VmRSS of one process every `every` seconds, in a thread of its own."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid = pid
        self.every = every
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="abuse-rss", daemon=True)
        self._started = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - self._started, rss_mb(self.pid)))
            self._stop.wait(self.every)

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        self._thread.join(5)
        return self.samples


def _hostile(port: int, seconds: float, body_limit: int) -> dict[str, Any]:
    config = {
        "port": port,
        "path": "/graphql",
        "seconds": seconds,
        "threads": HOSTILE_THREADS,
        "timeout": 30.0,
        "body_limit": body_limit,
    }
    command = [sys.executable, "-m", "bench.abuse_client", json.dumps(config)]
    done = subprocess.run(
        command, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=seconds + 120
    )
    if done.returncode != 0:
        raise RuntimeError(f"the hostile client failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run(bench: Bench) -> Outcome:
    outcome = Outcome()
    settings = bench.settings_for(bench.new_database("abuse"))
    limits = settings.limits
    hostile_seconds = bench.pick(600.0, 60.0)
    customers = [f"abuse-{uuid.uuid4().hex[:12]}" for _ in range(bench.pick(1000, 200))]
    process = projector(service_env(settings))
    try:
        with ServiceProcess(settings, role="all") as service:
            say(f"abuse: seeding {len(customers):,} customers, {len(SEGMENTS)} segments")
            seeded = seed_checked(service.base, customers, SEGMENTS, "bench-abuse")
            caught_up, sizes = projected(service.base, customers, SEGMENTS, 180.0)
            say(f"abuse:   seeded in {seeded:.1f}s, projected {caught_up:.1f}s later: {sizes}")
            outcome.details.update(seed_seconds=seeded, segment_sizes=sizes)
            _measure(bench, service, customers, hostile_seconds, limits.body_bytes,
                     limits.document_cache_bytes, outcome)  # fmt: skip
    finally:
        stop(process)
    return outcome


def _measure(
    bench: Bench, service: ServiceProcess, customers: list[str], hostile_seconds: float,
    body_limit: int, cache_bytes: int, outcome: Outcome,
) -> None:  # fmt: skip
    legit = Legit(service.port, customers)
    legit.start()
    say("abuse: legitimate client alone, 10 s warm-up and 10 s measured")
    time.sleep(10)
    legit.phase = "alone"
    time.sleep(10)
    before = rss_mb(service.pid)
    bound = rss_bound_mb(before, cache_bytes)
    say(f"abuse:   RSS {before:.0f} MB; bound {bound:.0f} MB")
    say(f"abuse: hostile mix for {hostile_seconds:.0f}s from {HOSTILE_THREADS} threads")
    legit.phase = "hostile"
    sampler = Sampler(service.pid)
    try:
        hostile = _hostile(service.port, hostile_seconds, body_limit)
    finally:
        samples = sampler.stop()
        legit.phase = "idle"
        legit.stop()
    rss = [mb for _, mb in samples]
    peak = max(rss) if rss else float("nan")
    last = rss[-1] if rss else float("nan")
    say(f"abuse:   RSS peak {peak:.0f} MB, last {last:.0f} MB; 10 s idle")
    time.sleep(10)
    after = rss_mb(service.pid)
    alone, during = legit.summary("alone"), legit.summary("hostile")
    say(
        f"abuse:   RSS after {after:.0f} MB; legit p50/p99 {alone['p50_ms']:.1f}/"
        f"{alone['p99_ms']:.1f} ms alone, {during['p50_ms']:.1f}/{during['p99_ms']:.1f} ms "
        f"during; hostile {hostile['requests']:,} requests, {hostile['failures']} failed"
    )
    for kind, seen in hostile["kinds"].items():
        say(
            f"abuse:     {kind:<26} {seen['requests']:>6,}  p50 {seen['latency']['p50_ms']:8.1f}"
            f" ms  max {seen['latency']['max_ms']:8.1f} ms  {seen['outcomes']}"
        )
    outcome.details.update(
        rss_mb={"before": before, "peak": peak, "last": last, "after": after, "bound": bound},
        bound=RSS_BOUND_MB,
        document_cache_bytes=cache_bytes,
        allowance_mb=ALLOWANCE_MB,
        rss_samples=[(round(t, 1), round(mb, 1)) for t, mb in samples[::4]],
        legit={"alone": alone, "hostile": during, "rate": LEGIT_RATE},
        hostile=hostile,
        customers=len(customers),
    )
    _judge(hostile, alone, during, before, peak, after, bound, outcome)
    _rows(hostile, alone, during, before, peak, after, bound, outcome)


def _judge(
    hostile: dict[str, Any], alone: dict[str, Any], during: dict[str, Any], before: float,
    peak: float, after: float, bound: float, outcome: Outcome,
) -> None:  # fmt: skip
    for kind, seen in hostile["kinds"].items():
        if seen["failures"]:
            outcome.failures.append(
                f"abuse: {kind}: {seen['failures']} of {seen['requests']} broke the promise, "
                f"e.g. {seen['examples'][0]}"
            )
    for label, value in (("before", before), ("peak", peak), ("after", after)):
        if not value <= bound:
            outcome.failures.append(
                f"abuse: RSS {label} {value:.0f} MB is over the bound {bound:.0f} MB"
            )
    for label, seen in (("alone", alone), ("during the hostile mix", during)):
        if seen["errors"]:
            outcome.failures.append(
                f"abuse: the legitimate client had {seen['errors']} errors {label}, "
                f"e.g. {seen['error_examples'][0]}"
            )


def _rows(
    hostile: dict[str, Any], alone: dict[str, Any], during: dict[str, Any], before: float,
    peak: float, after: float, bound: float, outcome: Outcome,
) -> None:  # fmt: skip
    within = Target("value", "<=", bound, f"<= {bound:.0f} MB")
    none = Target("value", "<=", 0, "0")
    failures = float(hostile["failures"])
    legit_errors = float(alone["errors"] + during["errors"])
    outcome.rows += [
        Row("abuse", "query side RSS before", before, " MB", RSS_BOUND_MB, bound, [within]),
        Row("abuse", "  peak during the hostile mix", peak, " MB", RSS_BOUND_MB, bound,
            [within]),
        Row("abuse", "  after it, 10 s idle", after, " MB", RSS_BOUND_MB, bound, [within]),
        Row("abuse", "legit profile read p50, alone", alone["p50_ms"], "ms"),
        Row("abuse", "  p99, alone", alone["p99_ms"], "ms"),
        Row("abuse", "  p50, during the hostile mix", during["p50_ms"], "ms", "alone",
            alone["p50_ms"]),
        Row("abuse", "  p99, during the hostile mix", during["p99_ms"], "ms", "alone",
            alone["p99_ms"]),
        Row("abuse", "  legit errors", legit_errors, "", targets=[none]),
        Row("abuse", "hostile requests answered", hostile["answered_per_second"], "/s"),
        Row("abuse", "  hostile broken promises", failures, "", targets=[none]),
    ]  # fmt: skip
