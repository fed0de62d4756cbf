"""`batched`: recordInteractions (500 per mutation) over HTTP, and execute() with 1,000 per unit."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial

from adapters.store_config import build_application
from bench.common import Bench, Hung, guarded, say
from bench.limits import Rate, raw_copy
from bench.loadgen import LoadConfig
from bench.profiling import sampled
from bench.report import Row, Target
from bench.scenarios import Outcome
from bench.service import ServiceProcess, cpu_sample, cpu_usage, run_load
from bench.workload import Interactions
from domain.application import utc_now
from domain.errors import DomainError

CLIENTS = 4
PER_MUTATION = 500
UNIT = 1_000
FALLBACK_UNIT = 500  # measured too when UNIT hangs: what the store path does short of that
POOL = 10_000
TIMEOUT = 10.0  # seconds for one execute() call; a normal one takes well under one
INGEST = Target("value", ">=", 20_000, ">= 20,000/s")
SHARE = Target("ratio", ">=", 0.30, ">= 30% of COPY")
NO_ERRORS = Target("value", "<=", 0, "none")


def run(bench: Bench) -> Outcome:
    outcome = Outcome()
    http_seconds = bench.pick(10.0, 3.0)
    settings = bench.settings_for(bench.new_database("batched_http"))
    say("batched: starting the service (uvicorn, uvloop + httptools, commands role)")
    with ServiceProcess(settings) as service:
        config = LoadConfig(
            port=service.port,
            clients=CLIENTS,
            duration=http_seconds,
            warmup=bench.pick(2.0, 1.0),
            batch=PER_MUTATION,
            pool=POOL,
            run_id=uuid.uuid4().hex[:8],
            occurred_at=(datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        )
        say(
            f"batched: {CLIENTS} clients x {PER_MUTATION} interactions/mutation, "
            f"{http_seconds:.0f}s"
        )
        before = cpu_sample(service.pid)
        with sampled(bench.profile, service.pid, bench.artifact("batched-service.raw")):
            load = run_load(config)
        cores = cpu_usage(before, cpu_sample(service.pid))
        commits = service.group_commit()
    http_rate = float(load["interactions_per_second"])
    say(
        f"batched:   {http_rate:,.0f} interactions/s, {load['errors']} errors; CPU cores: "
        f"service {cores['service_cores']:.2f}, machine {cores['machine_busy_cores']:.2f}"
    )

    seconds = bench.pick(8.0, 2.0)
    direct, hung = _execute(bench, seconds, UNIT)
    fallback: Rate | None = None
    if hung:
        outcome.failures.append(f"batched: {hung}")
        say(f"batched:   HUNG: {hung}; measuring units of {FALLBACK_UNIT} as well")
        fallback, hung_again = _execute(bench, seconds, FALLBACK_UNIT)
        if hung_again:
            outcome.failures.append(f"batched: {hung_again}")
    else:
        say(f"batched:   execute(): {direct.per_second:,.0f} interactions/s")
    rows = max(direct.count, fallback.count if fallback else 0, 10_000)
    say(f"batched: limit: raw COPY (binary) of {rows:,} event-sized rows")
    copy = raw_copy(bench.new_database("batched_copy", migrated=False), rows)
    say(f"batched:   {copy.per_second:,.0f} rows/s")

    outcome.details.update(load=load, cpu=cores, group_commit=commits, execute=direct.as_dict())
    outcome.details.update(copy=copy.as_dict(), execute_hung=hung)
    limit = f"raw COPY, {copy.count:,} rows"
    http = f"recordInteractions HTTP, {PER_MUTATION}/mutation, {CLIENTS} clients"
    targets = [INGEST, SHARE]
    outcome.rows = [
        Row("batched", http, http_rate, "/s", limit, copy.per_second, targets),
        Row("batched", "  errors (HTTP or GraphQL)", load["errors"], "", targets=[NO_ERRORS]),
        Row(
            "batched",
            f"execute(), units of {UNIT:,}",
            float("nan") if hung else direct.per_second,
            "/s",
            limit,
            copy.per_second,
            targets,
            shown="HUNG" if hung else None,
        ),
    ]
    if fallback is not None:
        outcome.details["execute_fallback"] = fallback.as_dict()
        figure = f"execute(), units of {FALLBACK_UNIT} (as {UNIT:,} hung)"
        outcome.rows.append(
            Row("batched", figure, fallback.per_second, "/s", limit, copy.per_second, targets)
        )
    if load["errors"]:
        outcome.failures.append(
            f"batched: {load['errors']} failed mutations, e.g. {load['error_samples'][:2]}"
        )
    if load["duplicates"] or direct.errors:
        outcome.failures.append(
            f"batched: {load['duplicates']} duplicates over HTTP, {direct.errors} failed units"
        )
    return outcome


def _execute(bench: Bench, seconds: float, size: int) -> tuple[Rate, str | None]:
    """Interactions/s of ProfileApplication.execute alone (commands parsed beforehand).

    Every call is guarded: a transaction that never returns is reported, not waited for.
    """
    url = bench.new_database(f"batched_execute_{size}")
    app = build_application(bench.settings_for(url), utc_now)
    source = Interactions(POOL, seed=2, label=f"exec{size}")
    spent, count, failed = 0.0, 0, 0
    try:
        say(f"batched: execute() directly, units of {size:,} interactions, {seconds:.0f}s")
        guarded(partial(app.execute, [source.unit(size)]), TIMEOUT)  # warm-up, not counted
        deadline = time.perf_counter() + seconds
        with sampled(bench.profile, os.getpid(), bench.artifact(f"batched-execute-{size}.raw")):
            while time.perf_counter() < deadline:
                unit = source.unit(size)
                started = time.perf_counter()
                outcomes = guarded(partial(app.execute, [unit]), TIMEOUT)
                spent += time.perf_counter() - started
                count += len(unit)
                failed += sum(isinstance(o, DomainError) for o in outcomes)
        return Rate(count, spent, errors=failed), None
    except Hung as hung:
        bench.terminate(url)
        message = (
            f"execute() of one unit of {size:,} interactions (random customers of {POOL:,}) "
            f"{hung}, after {count:,} interactions"
        )
        return Rate(count, spent, errors=failed), message
    finally:
        app.close()
