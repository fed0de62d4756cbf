"""`single`: one recordInteraction per HTTP request, 32 keep-alive clients (group commit)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from bench.common import Bench, say
from bench.limits import plain_concurrent, raw_insert_loop
from bench.loadgen import LoadConfig
from bench.profiling import sampled
from bench.report import Row, Target
from bench.scenarios import Outcome
from bench.service import ServiceProcess, cpu_sample, cpu_usage, run_load

CLIENTS = 32
POOL = 10_000
THROUGHPUT = Target("value", ">=", 1_500, ">= 1,500/s")
P99 = Target("value", "<=", 50, "<= 50 ms")
NO_ERRORS = Target("value", "<=", 0, "none")


def run(bench: Bench) -> Outcome:
    seconds = bench.pick(15.0, 3.0)
    limit_seconds = bench.pick(5.0, 1.5)
    say(f"single: limit (a) raw INSERT + commit per row, one connection, {limit_seconds:.1f}s")
    raw = raw_insert_loop(bench.new_database("single_raw", migrated=False), limit_seconds)
    say(f"single:   {raw.per_second:,.0f} rows/s, p99 {raw.latency['p99_ms']:.2f} ms")
    say(f"single: limit (b) plain eventsourcing Application, {CLIENTS} threads, {limit_seconds}s")
    plain_url = bench.new_database("single_plain", migrated=False)
    plain = plain_concurrent(plain_url, threads=CLIENTS, seconds=limit_seconds, pool=POOL)
    say(f"single:   {plain.per_second:,.0f} commands/s, p99 {plain.latency['p99_ms']:.1f} ms")

    settings = bench.settings_for(bench.new_database("single"))
    say("single: starting the service (uvicorn, uvloop + httptools, commands role)")
    with ServiceProcess(settings) as service:
        config = LoadConfig(
            port=service.port,
            clients=CLIENTS,
            duration=seconds,
            warmup=bench.pick(2.0, 1.0),
            pool=POOL,
            run_id=uuid.uuid4().hex[:8],
            occurred_at=(datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        )
        say(f"single: {CLIENTS} clients, {config.warmup:.0f}s warm-up + {seconds:.0f}s measured")
        before = cpu_sample(service.pid)
        with sampled(bench.profile, service.pid, bench.artifact("single-service.raw")):
            load = run_load(config)
        cores = cpu_usage(before, cpu_sample(service.pid))
        commits = service.group_commit()
    rate = float(load["requests_per_second"])
    say(
        f"single:   {rate:,.0f} mutations/s, p50 {load['p50_ms']:.1f} ms, p99 "
        f"{load['p99_ms']:.1f} ms, {load['errors']} errors, "
        f"{commits['units_per_transaction']:.1f} mutations per transaction"
    )
    say(
        f"single:   CPU cores: service {cores['service_cores']:.2f}, load generator "
        f"{load['loadgen_cores']:.2f}, whole machine {cores['machine_busy_cores']:.2f}"
    )

    outcome = Outcome(details={"raw_insert": raw.as_dict(), "plain_app": plain.as_dict()})
    outcome.details.update(load=load, cpu=cores, group_commit=commits, clients=CLIENTS, pool=POOL)
    figure = f"recordInteraction over HTTP, {CLIENTS} clients"
    outcome.rows = [
        Row(
            "single", figure, rate, "/s", "raw INSERT, commit per row", raw.per_second, [THROUGHPUT]
        ),
        Row("single", figure, rate, "/s", f"plain es app, {CLIENTS} threads", plain.per_second),
        Row(
            "single",
            "  p50 latency",
            load["p50_ms"],
            "ms",
            "plain es app p50",
            plain.latency["p50_ms"],
        ),
        Row(
            "single",
            "  p99 latency",
            load["p99_ms"],
            "ms",
            "plain es app p99",
            plain.latency["p99_ms"],
            [P99],
        ),
        Row("single", "  errors (HTTP or GraphQL)", load["errors"], "", targets=[NO_ERRORS]),
    ]
    if load["errors"]:
        outcome.failures.append(
            f"single: {load['errors']} failed mutations, e.g. {load['error_samples'][:2]}"
        )
    if load["duplicates"]:
        outcome.failures.append(f"single: {load['duplicates']} unique eventIds came back duplicate")
    if plain.errors:
        outcome.failures.append(f"single: the plain app limit had {plain.errors} failed commands")
    return outcome
