"""Steps of the `segments` scenario: define, seed, and run a projector to idle, timed."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import psycopg
import redis

from adapters.settings import Settings
from adapters.telemetry import setup_telemetry
from api.bootstrap import build_projector
from bench.common import Bench, guarded, say
from bench.profiling import sampled
from bench.segment_workload import segment_commands
from domain.application import ProfileApplication
from domain.commands import Command
from domain.segment import segment_uuid
from projections.runner import Projector
from projections.segment_state import Definition
from projections.segments import SegmentKeys

TIMEOUT = 10.0  # per execute() of one unit


def define_all(app: ProfileApplication) -> int:
    """Defines seg-00..seg-49; returns the store position of the last definition."""
    return max(app.define_segment(command).position for command in segment_commands())


def seed(app: ProfileApplication, units: Iterable[Sequence[Command]], label: str) -> float:
    """execute() of one unit at a time (on the guarded worker); returns seconds spent in it."""
    spent, commands = 0.0, 0
    for unit in units:
        started = time.perf_counter()
        guarded(partial(app.execute, [unit]), TIMEOUT)
        spent += time.perf_counter() - started
        commands += len(unit)
        if commands % 50_000 < len(unit):
            say(f"{label}:   {commands:,} commands seeded ({commands / spent:,.0f}/s)")
    return spent


def drop_segment_events(database_url: str) -> int:
    """Deletes the segment definitions' events from a copy of a seeded store."""
    ids = [segment_uuid(c.segment_id) for c in segment_commands()]
    with psycopg.connect(database_url) as conn:
        cursor = conn.execute("DELETE FROM profiles_events WHERE originator_id = ANY(%s)", (ids,))
        return cursor.rowcount


def stored_events(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM profiles_events").fetchone()
    return int(row[0]) if row else 0


@contextlib.contextmanager
def projector_for(settings: Settings) -> Iterator[Projector]:
    """The service's projector (all read models) on these settings, closed afterwards."""
    telemetry = setup_telemetry(settings)
    projector, reader, wakeup = build_projector(settings, telemetry)
    try:
        yield projector
    finally:
        wakeup.close()
        reader.close()
        telemetry.shutdown()


@dataclass
class Projected:
    applied: int  # what catch_up() returned
    catch_up: float  # seconds
    maintain: float  # seconds of maintain() until it returned False (or the deadline)
    steps: int  # maintain() calls that did something
    finished: bool  # maintain() reached False before the deadline
    live: int  # segment definitions live afterwards
    filling: int  # ... and still filling

    def as_dict(self) -> dict[str, float | int | bool]:
        return dict(self.__dict__)


def live_definitions(settings: Settings) -> tuple[int, int]:
    """(live, filling) segment definitions as the read model stored them."""
    client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        stored = client.hgetall(SegmentKeys(settings.redis_namespace).definitions)
    finally:
        client.close()
    states = [Definition.from_json(str(raw)) for raw in stored.values()]
    live = sum(1 for d in states if d.state == "live" and not d.retired)
    return live, sum(1 for d in states if d.state == "filling" and not d.retired)


def settle(projector: Projector, deadline: float) -> tuple[float, int, bool]:
    """maintain() until it returns False: (seconds, busy steps, finished before deadline)."""
    started = time.perf_counter()
    steps = 0
    while projector.maintain():
        steps += 1
        if time.perf_counter() - started > deadline:
            return time.perf_counter() - started, steps, False
    return time.perf_counter() - started, steps, True


def project(bench: Bench, settings: Settings, label: str, deadline: float) -> Projected:
    """catch_up() from 0, then maintain() to idle, each timed; profiled with --profile."""
    with projector_for(settings) as projector:
        with sampled(bench.profile, os.getpid(), bench.artifact(f"{label}-catch-up.raw")):
            started = time.perf_counter()
            applied = projector.catch_up()
            catch_up = time.perf_counter() - started
        say(f"{label}:   catch_up() {catch_up:.1f}s; maintain() until idle")
        with sampled(bench.profile, os.getpid(), bench.artifact(f"{label}-maintain.raw")):
            maintain, steps, finished = settle(projector, deadline)
    live, filling = live_definitions(settings)
    say(f"{label}:   maintain() {maintain:.1f}s, {steps} steps, {live} live, {filling} filling")
    return Projected(applied, catch_up, maintain, steps, finished, live, filling)
