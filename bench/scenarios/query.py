"""`query`: the query side's profile reads, beside the Redis reads they are made of.

A seeded stack (bench.seeding: commands service, query service, projector) with the ESP
segments, and the bare endpoint (bench.bare_query: the service's own Redis read, one script
call through redis.asyncio, from a bare Starlette app, no GraphQL; and the same call as raw
RESP with no client library) on the same Redis namespace. Each measurement runs against the
bare endpoint and then against the query service (role "query"), each request one of ~200
prepared ones for different seeded customers:

1. closed loop with wrk, 8 connections, 2 threads: requests/s, p50, p99; also the service's
   GET with a persisted query, and the service beside the raw-RESP read (what the client
   library costs), both informational;
2. paced at 1,000 requests/s (bench.paced_get, 32 connections; latency from the time each
   request was due): p50, p99;
3. the same pace with GET and an automatic persisted query (the document registered once);
4. `profiles(customerIds: [500 ids])` closed loop, 4 connections: profiles/s, beside the
   bare endpoint's POST /profiles of the same 500 ids (and beside raw RESP);
5. what the read costs Redis itself (bench.redis_cost): its CPU per profile for the READ
   script beside the same reads as one MULTI, informational.

Every answer is checked: HTTP 200, no "errors", no null profile. Answers that fail count as
errors; a measurement with errors says so in its row and in the run's failures. Each run
also notes the cores its server process and the whole machine used (details: "cpu").
"""

from __future__ import annotations

import json
import random
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from adapters.settings import Settings
from api.persisted_queries import sha256_hex
from bench import redis_cost
from bench.bare_query import BareEndpoint
from bench.common import Bench, say
from bench.paced_get import PacedConfig, run_paced
from bench.report import Row, Target
from bench.scenarios import Outcome
from bench.seeding import ESP_SEGMENTS, PROFILE, PROFILE_SELECTION, seeded_stack
from bench.service import ServiceProcess, cpu_sample, cpu_usage
from bench.wrk import lua_script, run_wrk

PROFILES = f"query($ids: [ID!]!) {{ profiles(customerIds: $ids) {{ {PROFILE_SELECTION} }} }}"
PREPARED = 200  # different customers the single reads pick from
BATCH = 500  # ids per profiles(customerIds:) request
BATCHES = 8  # different batches the batch reads pick from
PACE = 1_000.0  # requests a second, paced
Request = tuple[str, str, str | None]
# A null profile: `"profile":null` for one, a null entry of the list for a batch (the
# seeded customers all have interactions, so no other field of the selection is ever null).
SERVICE_BAD = ['"errors"', '"profile":null', '"profile": null']
SERVICE_BATCH_BAD = ['"errors"', "[null", ",null", ", null"]
BARE_BAD = ['"profile":null', '"error"']
BARE_BATCH_BAD = ["[null", ",null", '"error"']
P99 = (
    Target("value", "<=", 10.0, "<= 10 ms"),
    Target("ratio", "<=", 2.0, "<= 2x bare"),
)


class Measured(Protocol):
    """A process under measurement: ServiceProcess or BareEndpoint."""

    @property
    def base(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def pid(self) -> int: ...


def _graphql(query: str, variables: dict[str, Any]) -> Request:
    return ("POST", "/graphql", json.dumps({"query": query, "variables": variables}))


def _persisted_get(digest: str, customer: str) -> Request:
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    params = urllib.parse.urlencode(
        {
            "extensions": json.dumps(extensions, separators=(",", ":")),
            "variables": json.dumps({"id": customer}, separators=(",", ":")),
        }
    )
    return ("GET", f"/graphql?{params}", None)


def _register(base: str, digest: str) -> None:
    """The persisted query's first send: the text with its hash, which registers it."""
    body = json.dumps(
        {
            "query": PROFILE,
            "variables": {"id": "nobody"},
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}},
        }
    ).encode()
    request = urllib.request.Request(f"{base}/graphql", body, {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    if answer.get("errors"):
        raise RuntimeError(f"registering the persisted query: {answer['errors']}")


def _check_once(base: str, request: Request, bad: list[str]) -> None:
    """One prepared request sent before a measurement: a bad answer is the scenario's crash
    (the measurement would count nothing but errors)."""
    method, path, body = request
    sent = urllib.request.Request(
        base + path,
        None if body is None else body.encode(),
        {} if body is None else {"content-type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(sent, timeout=30) as response:
        text = response.read().decode()
        status = response.status
    found = [b for b in bad if b in text]
    if status != 200 or found:
        raise RuntimeError(f"{method} {base}{path[:80]}: HTTP {status}, {found}: {text[:300]}")


def _wrk(
    bench: Bench,
    name: str,
    target: Measured,
    requests: list[Request],
    bad: list[str],
    seconds: float,
    connections: int,
) -> dict[str, Any]:
    script = bench.artifact(f"query-{name}.lua")
    script.write_text(lua_script(requests, bad))
    try:
        # warm-up
        run_wrk(target.base, script, min(2.0, seconds), threads=2, connections=connections)
        before = cpu_sample(target.pid)
        found = run_wrk(target.base, script, seconds, threads=2, connections=connections)
        found["cpu"] = cpu_usage(before, cpu_sample(target.pid))
    finally:
        Path(script).unlink(missing_ok=True)
    say(
        f"query:   {name}: {found['requests_per_second']:,.0f}/s, p50 {found['p50_ms']:.2f} ms, "
        f"p99 {found['p99_ms']:.2f} ms, {found['errors']} errors, {_cores(found)}"
    )
    return found


def _cores(found: dict[str, Any]) -> str:
    cpu = found["cpu"]
    return f"cores: server {cpu['service_cores']:.2f}, machine {cpu['machine_busy_cores']:.2f}"


def _paced(
    name: str, target: Measured, requests: list[Request], bad: list[str], seconds: float
) -> dict[str, Any]:
    config = PacedConfig(
        port=target.port,
        requests=requests,
        mode="paced",
        rate=PACE,
        connections=32,
        duration=seconds,
        warmup=2.0,
        bad=bad,
    )
    before = cpu_sample(target.pid)
    found = run_paced(config)
    found["cpu"] = cpu_usage(before, cpu_sample(target.pid))  # warm-up included
    lat = found["latency"]
    say(
        f"query:   {name}: answered {found['achieved_per_second']:,.0f}/s of {PACE:,.0f}, "
        f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, {found['errors']} errors, "
        f"{_cores(found)}"
    )
    return found


def _cpu_ms(found: dict[str, Any], per: int = 1) -> float:
    """Milliseconds of the server process's CPU per request, or per profile when a request
    reads `per`: a figure that holds up better than a rate when other work shares the cores."""
    rate = found["requests_per_second"] * per
    return float(found["cpu"]["service_cores"] / rate * 1_000) if rate else float("nan")


def _errors(found: dict[str, Any]) -> tuple[int, int, str]:
    """(errors, answers, an example) of a wrk or paced_get result."""
    if "requests_per_second" in found:  # wrk
        return found["errors"], found["requests"], found["bad_example"]
    examples = found.get("error_examples") or [""]
    return found["errors"], found["completed"], examples[0]


def _behind(text: str, runs: dict[str, dict[str, Any]]) -> str:
    """The figure, naming a paced run that answered below the pace (it fell behind: its
    queue, not its service time, is then what the latency shows)."""
    notes = [
        f"{who} answered {found['achieved_per_second']:,.0f}/s"
        for who, found in runs.items()
        if found["achieved_per_second"] < 0.98 * PACE
    ]
    return text if not notes else f"{text} ({', '.join(notes)})"


def _figure(text: str, runs: dict[str, dict[str, Any]], outcome: Outcome) -> str:
    """The row's figure, naming the errors of its runs (also listed as failures)."""
    notes = []
    for who, found in runs.items():
        errors, answers, example = _errors(found)
        if errors:
            notes.append(f"{who} {errors:,} errors")
            outcome.failures.append(
                f"query: {text}: {who}: {errors:,} bad answers of {answers:,}: {example[:300]}"
            )
    return text if not notes else f"{text} ({', '.join(notes)})"


def run(bench: Bench) -> Outcome:
    outcome = Outcome()
    count = bench.pick(5_000, 1_000)
    seconds = bench.pick(20.0, 8.0)
    with (
        seeded_stack(bench, "query", count, ESP_SEGMENTS) as stack,
        BareEndpoint(stack.env) as bare,
    ):
        outcome.details["stack"] = stack.details()
        rng = random.Random(14)
        chosen = rng.sample(stack.customers, min(PREPARED, len(stack.customers)))
        batches = [rng.sample(stack.customers, min(BATCH, count)) for _ in range(BATCHES)]
        _measure(bench, stack.query, bare, chosen, batches, seconds, outcome)
        _redis_cost(stack.settings, batches, bench.pick(40, 16), outcome)
    return outcome


def _redis_cost(settings: Settings, batches: list[list[str]], calls: int, outcome: Outcome) -> None:
    say(f"query: Redis CPU per profile, {calls} reads of {BATCH} ids: the script, then a MULTI")
    cost = redis_cost.measure(str(settings.redis_url), settings.redis_namespace, batches, calls)
    outcome.details["redis_cost"] = cost
    script, multi = cost["script"], cost["multi"]
    outcome.rows.append(
        Row("query", "  Redis CPU per profile, READ script", script["redis_cpu_us_per_profile"],
            " µs", "the same reads as one MULTI", multi["redis_cpu_us_per_profile"])
    )  # fmt: skip


def _measure(
    bench: Bench,
    service: ServiceProcess,
    bare: BareEndpoint,
    chosen: list[str],
    batches: list[list[str]],
    seconds: float,
    outcome: Outcome,
) -> None:
    details = outcome.details
    single = [_graphql(PROFILE, {"id": c}) for c in chosen]
    bare_single: list[Request] = [
        ("GET", f"/profile?id={urllib.parse.quote(c)}", None) for c in chosen
    ]
    raw_single: list[Request] = [("GET", "/raw" + path, None) for _, path, _ in bare_single]
    digest = sha256_hex(PROFILE)
    persisted = [_persisted_get(digest, c) for c in chosen]
    many = [_graphql(PROFILES, {"ids": ids}) for ids in batches]
    bare_many: list[Request] = [("POST", "/profiles", json.dumps({"ids": ids})) for ids in batches]
    raw_many: list[Request] = [("POST", "/raw/profiles", body) for _, _, body in bare_many]
    _check_once(service.base, single[0], SERVICE_BAD)
    _check_once(bare.base, bare_single[0], BARE_BAD)
    _check_once(bare.base, raw_single[0], BARE_BAD)
    _check_once(service.base, many[0], SERVICE_BATCH_BAD)
    _check_once(bare.base, bare_many[0], BARE_BATCH_BAD)
    _check_once(bare.base, raw_many[0], BARE_BATCH_BAD)
    _register(service.base, digest)
    _check_once(service.base, persisted[0], SERVICE_BAD)
    details["prepared_requests"] = len(chosen)
    details["persisted_get_example"] = persisted[0][1][:300]

    say(f"query: closed loop, wrk 8 connections, {seconds:.0f}s each")
    closed = {
        "bare": _wrk(bench, "bare-closed", bare, bare_single, BARE_BAD, seconds, 8),
        "service": _wrk(bench, "service-closed", service, single, SERVICE_BAD, seconds, 8),
    }
    closed_get = _wrk(bench, "service-get-closed", service, persisted, SERVICE_BAD, seconds, 8)
    closed_raw = _wrk(bench, "raw-closed", bare, raw_single, BARE_BAD, seconds, 8)
    details["closed_loop"] = {
        **closed,
        "service_persisted_get": closed_get,
        "bare_raw_resp": closed_raw,
    }
    s, b = closed["service"], closed["bare"]
    limit = "bare: the same Redis read"
    outcome.rows += [
        Row("query", _figure("profile closed loop, 8 conns", closed, outcome),
            s["requests_per_second"], "/s", limit, b["requests_per_second"],
            (Target("ratio", ">=", 0.6, ">= 0.6x bare"),)),
        Row("query", "  closed loop p50", s["p50_ms"], "ms", "bare p50", b["p50_ms"]),
        Row("query", "  closed loop p99", s["p99_ms"], "ms", "bare p99", b["p99_ms"]),
        Row("query", "  server CPU per request", _cpu_ms(s), "ms", "bare CPU per request",
            _cpu_ms(b)),
        Row("query", _figure("  GET persisted query, closed loop", {"service": closed_get},
                             outcome),
            closed_get["requests_per_second"], "/s", limit, b["requests_per_second"]),
        Row("query", _figure("  profile closed loop, 8 conns", {"service": s}, outcome),
            s["requests_per_second"], "/s", "bare, raw RESP (no client library)",
            closed_raw["requests_per_second"]),
    ]  # fmt: skip

    say(f"query: paced at {PACE:,.0f}/s, 32 connections, {seconds:.0f}s each")
    paced = {
        "bare": _paced("bare-paced", bare, bare_single, BARE_BAD, seconds),
        "service": _paced("service-paced", service, single, SERVICE_BAD, seconds),
    }
    paced_get = _paced("service-persisted-get", service, persisted, SERVICE_BAD, seconds)
    details["paced"] = {**paced, "service_persisted_get": paced_get}
    sl, bl, gl = paced["service"]["latency"], paced["bare"]["latency"], paced_get["latency"]
    outcome.rows += [
        Row("query", "profile p50 at 1,000 req/s", sl["p50_ms"], "ms", "bare p50", bl["p50_ms"]),
        Row("query", _figure(_behind("profile p99 at 1,000 req/s", paced), paced, outcome),
            sl["p99_ms"], "ms", "bare p99", bl["p99_ms"], P99),
        Row("query", _figure(_behind("  GET persisted query p99", {"service": paced_get}),
                             {"service": paced_get}, outcome),
            gl["p99_ms"], "ms", "bare p99", bl["p99_ms"], P99),
    ]  # fmt: skip

    say(f"query: profiles({BATCH} ids) closed loop, wrk 4 connections, {seconds:.0f}s each")
    batch = {
        "bare": _wrk(bench, "bare-batch", bare, bare_many, BARE_BATCH_BAD, seconds, 4),
        "service": _wrk(bench, "service-batch", service, many, SERVICE_BATCH_BAD, seconds, 4),
    }
    batch_raw = _wrk(bench, "raw-batch", bare, raw_many, BARE_BATCH_BAD, seconds, 4)
    details["batch"] = {**batch, "bare_raw_resp": batch_raw}
    per = {who: found["requests_per_second"] * BATCH for who, found in details["batch"].items()}
    details["batch_profiles_per_second"] = per
    outcome.rows += [
        Row("query", _figure(f"profiles({BATCH} ids), 4 conns", batch, outcome),
            per["service"], "/s", f"bare POST /profiles, {BATCH} ids", per["bare"],
            (Target("value", ">=", 20_000, ">= 20,000 profiles/s"),)),
        Row("query", "  batch p99", batch["service"]["p99_ms"], "ms", "bare p99",
            batch["bare"]["p99_ms"]),
        Row("query", "  server CPU per 1,000 profiles", _cpu_ms(batch["service"], BATCH) * 1_000,
            "ms", "bare CPU per 1,000 profiles", _cpu_ms(batch["bare"], BATCH) * 1_000),
        Row("query", f"  profiles({BATCH} ids), 4 conns", per["service"], "/s",
            "bare, raw RESP (no client library)", per["bare_raw_resp"]),
    ]  # fmt: skip
