"""`python -m bench [--quick] [--only NAME] [--profile]`: run the scenarios, print the table."""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from adapters.embedded import start_stack
from adapters.settings import Settings
from bench.common import Bench, say
from bench.host_speed import python_steps_per_second
from bench.report import Row, table, write_json
from bench.scenarios import (
    Outcome,
    abuse,
    batched,
    faults,
    freshness,
    history,
    kafka,
    projection,
    query,
    rebuild,
    segments,
    single,
)

SCENARIOS: dict[str, Callable[[Bench], Outcome]] = {
    "single": single.run,
    "batched": batched.run,
    "history": history.run,
    "projection": projection.run,
    "segments": segments.run,
    "rebuild": rebuild.run,
    "kafka": kafka.run,
    "faults": faults.run,
    "abuse": abuse.run,
    "query": query.run,
    "freshness": freshness.run,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs (under 90 s)")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(SCENARIOS),
        metavar="NAME",
        help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile: py-spy on the service process, cProfile in-process "
        "(figures then are not comparable); files go to bench/results/",
    )
    return parser


def _server_facts(database_url: str) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        facts: dict[str, Any] = {}
        for name in ("server_version", "synchronous_commit", "fsync", "shared_buffers"):
            row = conn.execute(f"SHOW {name}").fetchone()
            facts[name] = row[0] if row else None
    return facts


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    names = [n for n in SCENARIOS if n in (args.only or SCENARIOS)]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    started = time.monotonic()
    configured = Settings.from_env()
    say(
        "servers: "
        + ("DATABASE_URL" if configured.database_url else "embedded Postgres")
        + " + "
        + ("REDIS_URL" if configured.redis_url else "embedded Valkey")
        + (
            ""
            if "kafka" not in names
            else " + "
            + (
                "KAFKA_BOOTSTRAP_SERVERS"
                if configured.kafka_bootstrap_servers
                else "embedded Tansu"
            )
        )
    )
    settings, stop = start_stack(configured, kafka="kafka" in names, temporary=True)
    rows: list[Row] = []
    details: dict[str, Any] = {}
    failures: list[str] = []
    seconds: dict[str, float] = {}
    server: dict[str, Any] = {}
    speed = {"before": python_steps_per_second()}
    try:
        bench = Bench(settings, quick=args.quick, stamp=stamp, profile=args.profile)
        server = _server_facts(bench.database_url)
        for name in names:
            say(f"== {name}")
            begun = time.monotonic()
            try:
                outcome = SCENARIOS[name](bench)
            except Exception as error:  # one broken scenario must not cost the others' results
                logging.getLogger("bench").exception("scenario %s crashed", name)
                outcome = Outcome(failures=[f"{name}: crashed: {error!r}"])
            finally:
                bench.cleanup()
            seconds[name] = time.monotonic() - begun
            say(f"== {name} done in {seconds[name]:.0f}s")
            rows += outcome.rows
            details[name] = outcome.details
            failures += outcome.failures
    finally:
        stop()
    speed["after"] = python_steps_per_second()
    total = time.monotonic() - started
    mode = "quick" if args.quick else "full"
    print(
        f"\nbench ({mode}, {os.cpu_count()} CPUs, Postgres {server.get('server_version')}, "
        f"{total:.0f}s){' PROFILED: figures not comparable' if args.profile else ''}\n"
    )
    print(table(rows))
    print("\nratio = figure / limit (for ms rows: lower is better)")
    print(
        f"host speed: {speed['before']:.1f} M Python steps/s before the run, "
        f"{speed['after']:.1f} after (bench/host_speed.py: compare runs only as far as these)"
    )
    h = details.get("history") or {}
    if "long_over_new_warm" in h:
        print(
            f"history length cost: 10,000-event / new customer = "
            f"{h['long_over_new_warm']:.2f}x warm, {h['long_over_new_cold']:.2f}x cold"
        )
    missed = [f"{r.scenario}: {r.figure.strip()}" for r in rows if r.verdict == "MISSES target"]
    for line in missed:
        print(f"MISSES target: {line}")
    path = write_json(
        stamp,
        {
            "stamp": stamp,
            "mode": mode,
            "scenarios": names,
            "profiled": args.profile,
            "seconds": {"total": total, **seconds},
            "machine": {
                "cpus": os.cpu_count(),
                "python": sys.version,
                "platform": platform.platform(),
                "python_steps_per_second_millions": speed,
            },
            "servers": {
                "embedded_postgres": configured.database_url is None,
                "embedded_redis": configured.redis_url is None,
                **server,
            },
            "rows": [r.as_dict() for r in rows],
            "details": details,
            "failures": failures,
        },
    )
    print(f"\nresults: {path}")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
