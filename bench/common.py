"""Shared plumbing: progress lines, a fresh database per measurement, statistics."""

from __future__ import annotations

import queue
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql

from adapters.migrate import migrate
from adapters.settings import Settings

T = TypeVar("T")
RESULTS = Path(__file__).resolve().parent / "results"
_STARTED = time.monotonic()


def say(message: str) -> None:
    """A progress line on stderr, stamped with the seconds since the run began."""
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def with_database(database_url: str, name: str) -> str:
    """The same server URL with another database name (keeps `?host=/socket/dir`)."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean in milliseconds of latencies given in seconds."""
    ordered = sorted(s * 1000 for s in seconds)
    return {
        "n": float(len(ordered)),
        "p50_ms": percentile(ordered, 50),
        "p90_ms": percentile(ordered, 90),
        "p99_ms": percentile(ordered, 99),
        "max_ms": ordered[-1] if ordered else float("nan"),
        "mean_ms": statistics.fmean(ordered) if ordered else float("nan"),
    }


def median_ms(seconds: Sequence[float]) -> float:
    return statistics.median(seconds) * 1000 if seconds else float("nan")


class Hung(Exception):
    """A call that did not return in time; its thread is left behind, blocked."""


class _Worker:
    """Runs calls on one daemon thread, each within a time limit.

    A stuck database call must cost the run a timeout, not the whole run: the thread that
    overran is left behind and the next call gets a new one (named anew, for profiles).
    """

    def __init__(self) -> None:
        self._started = 0
        self._jobs = self._start()

    def _start(self) -> queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]]:
        self._started += 1
        jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        name = f"bench-worker-{self._started}"
        threading.Thread(target=self._serve, args=(jobs,), name=name, daemon=True).start()
        return jobs

    @staticmethod
    def _serve(jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]]) -> None:
        while True:
            call, future = jobs.get()
            try:
                future.set_result(call())
            except BaseException as error:
                future.set_exception(error)

    def run(self, call: Callable[[], T], timeout: float) -> T:
        future: Future[T] = Future()
        self._jobs.put((call, future))
        try:
            return future.result(timeout)
        except FutureTimeout:
            self._jobs = self._start()
            raise Hung(f"no return within {timeout:.0f}s") from None


_WORKER = _Worker()


def guarded(call: Callable[[], T], timeout: float) -> T:
    """call() on the worker thread; raises Hung if it has not returned after `timeout` s."""
    return _WORKER.run(call, timeout)


@dataclass
class Bench:
    """What every scenario gets: the servers, the run's size, and cleanup bookkeeping."""

    settings: Settings
    quick: bool
    stamp: str
    profile: bool = False
    databases: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        assert self.settings.database_url is not None, "no Postgres started or configured"
        return self.settings.database_url

    @property
    def redis_url(self) -> str:
        assert self.settings.redis_url is not None, "no Valkey started or configured"
        return self.settings.redis_url

    def pick(self, full: T, quick: T) -> T:
        return quick if self.quick else full

    def artifact(self, name: str) -> Path:
        """A file beside the run's JSON result (profiles), bench/results/<stamp>-<name>."""
        RESULTS.mkdir(parents=True, exist_ok=True)
        return RESULTS / f"{self.stamp}-{name}"

    def new_database(self, label: str, *, migrated: bool = True) -> str:
        """CREATE DATABASE bench_<label>_<random> on the server; migrated unless told not to."""
        name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.databases.append(name)
        url = with_database(self.database_url, name)
        if migrated:
            migrate(url)
        return url

    def clone_database(self, database_url: str, label: str) -> str:
        """CREATE DATABASE ... TEMPLATE: a file-level copy; nobody may be connected to it."""
        source = urlsplit(database_url).path.lstrip("/")
        name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}")
            conn.execute(statement.format(sql.Identifier(name), sql.Identifier(source)))
        self.databases.append(name)
        return with_database(self.database_url, name)

    def new_namespace(self, label: str) -> str:
        namespace = f"bench:{label}:{uuid.uuid4().hex[:8]}:"
        self.namespaces.append(namespace)
        return namespace

    def settings_for(self, database_url: str, **changes: Any) -> Settings:
        """The run's settings pointed at one scenario database, with a fresh Redis namespace."""
        namespace = self.new_namespace("svc")
        return replace(
            self.settings, database_url=database_url, redis_namespace=namespace, **changes
        )

    def terminate(self, database_url: str) -> int:
        """Ends the server sessions on one database (frees a hung client); returns how many."""
        name = urlsplit(database_url).path.lstrip("/")
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            ).fetchall()
        return len(rows)

    def cleanup(self) -> None:
        """Drops the scenario databases and Redis keys (they matter on configured servers)."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            for name in self.databases:
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                conn.execute(drop.format(sql.Identifier(name)))
        self.databases.clear()
        client = redis.Redis.from_url(self.redis_url)
        try:
            for namespace in self.namespaces:
                batch: list[bytes] = []
                for key in client.scan_iter(match=f"{namespace}*", count=1_000):
                    batch.append(key)
                    if len(batch) >= 1_000:
                        client.unlink(*batch)
                        batch.clear()
                if batch:
                    client.unlink(*batch)
        finally:
            client.close()
        self.namespaces.clear()
