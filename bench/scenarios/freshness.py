"""`freshness`: how soon a recorded interaction shows on the query side, under write load.

A seeded stack (bench.seeding: commands service, query service, projector in its own
process) takes background writes at 1,000 events/s (bench.background_writes: 20
recordInteractions batches of 50 a second, paced, for the seeded customers other than the
probes). Meanwhile a probe, a few times a second, records one interaction for one of its own
customers through /commands/graphql (a unique eventId, occurredAt now) and notes when the
command answered (accepted: committed). It then reads that customer from /graphql,
`recentInteractions(first: 1) { eventId }` without minPosition, on one keep-alive
connection, with a 2 ms pause between reads, until the new eventId is the newest; freshness
is the arrival of the first answer that shows it, less the acceptance.

What it spans: the commit's NOTIFY waking the projector (it LISTENs; its poll, at most 0.2 s
with time-driven models, only covers a lost NOTIFY), the projector reading the new page from
Postgres and applying it to Redis in one script call per read model, and a query-side read.
The measurement's own resolution is one poll step (a read's round trip plus the pause): the
limit beside the figures is that step's median, measured in the same probes.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from bench.background_writes import BackgroundConfig, BackgroundWrites
from bench.common import Bench, latency_summary, percentile, say
from bench.report import Row, Target
from bench.scenarios import Outcome
from bench.seeding import ESP_SEGMENTS, Stack, seeded_stack

RECORD = (
    "mutation($i: InteractionInput!) { recordInteraction(input: $i) "
    "{ position duplicate suppressed } }"
)
NEWEST = "query($id: ID!) { profile(customerId: $id) { recentInteractions(first: 1) { eventId } } }"
EVENTS_PER_SECOND = 1_000.0
BATCH = 50
PROBE_CUSTOMERS = 20
PROBES_PER_SECOND = 5.0
PAUSE = 0.002  # between reads of one probe
GIVE_UP = 10.0  # seconds a probe waits for its interaction to show


class Client:
    """GraphQL over one keep-alive connection (reopened after a failure)."""

    def __init__(self, port: int, path: str) -> None:
        self.port = port
        self.path = path
        self._conn: http.client.HTTPConnection | None = None

    def ask(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables})
        try:
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self._conn.request("POST", self.path, body, {"content-type": "application/json"})
            response = self._conn.getresponse()
            text = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {text[:300]!r}")
        answer: dict[str, Any] = json.loads(text)
        if answer.get("errors"):
            raise RuntimeError(f"errors: {answer['errors']}")
        return answer

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _newest(answer: dict[str, Any]) -> str | None:
    found = answer["data"]["profile"]
    if found is None:
        raise RuntimeError("a seeded probe customer read as null")
    items = found["recentInteractions"]
    return str(items[0]["eventId"]) if items else None


def run(bench: Bench) -> Outcome:
    outcome = Outcome()
    count = bench.pick(2_000, 500)
    probes = bench.pick(300, 100)
    with seeded_stack(bench, "fresh", count, ESP_SEGMENTS) as stack:
        outcome.details["stack"] = stack.details()
        _measure(stack, probes, outcome)
    return outcome


def _measure(stack: Stack, probes: int, outcome: Outcome) -> None:
    mine, others = stack.customers[:PROBE_CUSTOMERS], stack.customers[PROBE_CUSTOMERS:]
    tag = uuid.uuid4().hex[:8]
    commands = Client(stack.commands.port, "/commands/graphql")
    query = Client(stack.query.port, "/graphql")
    for customer in mine:  # warm both connections, and the documents
        _newest(query.ask(NEWEST, {"id": customer}))
    config = BackgroundConfig(
        port=stack.commands.port,
        customers=others,
        run=tag,
        events_per_second=EVENTS_PER_SECOND,
        batch=BATCH,
    )
    say(
        f"fresh: {probes} probes at {PROBES_PER_SECOND:.0f}/s, background writes "
        f"{EVENTS_PER_SECOND:,.0f} events/s in batches of {BATCH}"
    )
    freshness: list[float] = []
    accepted_in: list[float] = []
    reads: list[float] = []  # each poll's round trip
    steps: list[float] = []  # between the answers of successive polls of one probe
    polls: list[int] = []
    errors: list[str] = []
    with BackgroundWrites(config) as writer:
        time.sleep(3.0)  # the writer reaches its pace, the projector its steady state
        began = time.monotonic()
        for n in range(probes):
            due = began + n / PROBES_PER_SECOND
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            customer = mine[n % len(mine)]
            event_id = f"{tag}-probe-{n}"
            try:
                seen = _probe(commands, query, customer, event_id, reads, steps)
            except Exception as error:  # a failed probe is counted, the others go on
                errors.append(f"probe {n}: {error!r}"[:300])
                continue
            if seen is None:
                errors.append(f"probe {n}: {event_id} not visible after {GIVE_UP:.0f}s")
                continue
            accepted, fresh, count = seen
            accepted_in.append(accepted)
            freshness.append(fresh)
            polls.append(count)
        probing = time.monotonic() - began
        background = writer.finish()
    commands.close()
    query.close()
    _report(outcome, freshness, accepted_in, reads, steps, polls, errors, probing, background)


def _probe(
    commands: Client,
    query: Client,
    customer: str,
    event_id: str,
    reads: list[float],
    steps: list[float],
) -> tuple[float, float, int] | None:
    """(seconds the command took, seconds until visible, reads) of one probe; None if it
    did not show within GIVE_UP."""
    variables = {
        "i": {
            "eventId": event_id,
            "customerId": customer,
            "type": "page_view",
            "occurredAt": datetime.now(UTC).isoformat(),
            "channel": "web",
        }
    }
    sent = time.perf_counter()
    result = commands.ask(RECORD, variables)["data"]["recordInteraction"]
    accepted = time.perf_counter()
    if result["duplicate"] or result["suppressed"]:
        raise RuntimeError(f"the probe's interaction was not recorded: {result}")
    count = 0
    last: float | None = None
    while (now := time.perf_counter()) - accepted < GIVE_UP:
        newest = _newest(query.ask(NEWEST, {"id": customer}))
        answered = time.perf_counter()
        count += 1
        reads.append(answered - now)
        if last is not None:
            steps.append(answered - last)
        last = answered
        if newest == event_id:
            return accepted - sent, answered - accepted, count
        time.sleep(PAUSE)
    return None


def _report(
    outcome: Outcome,
    freshness: list[float],
    accepted_in: list[float],
    reads: list[float],
    steps: list[float],
    polls: list[int],
    errors: list[str],
    probing: float,
    background: dict[str, Any],
) -> None:
    fresh = latency_summary(freshness)
    step = latency_summary(steps)
    ordered_polls = sorted(polls)
    achieved = float(background.get("events_per_second", float("nan")))
    outcome.details.update(
        freshness=fresh,
        accepted=latency_summary(accepted_in),
        read_round_trip=latency_summary(reads),
        poll_step=step,
        polls_per_probe={
            "p50": percentile(ordered_polls, 50),
            "p99": percentile(ordered_polls, 99),
            "max": ordered_polls[-1] if ordered_polls else None,
        },
        probes=len(freshness) + len(errors),
        probes_visible=len(freshness),
        probe_errors=errors[:10],
        probing_seconds=probing,
        background=background,
    )
    say(
        f"fresh:   p50 {fresh['p50_ms']:.1f} ms, p99 {fresh['p99_ms']:.1f} ms, max "
        f"{fresh['max_ms']:.1f} ms over {len(freshness)} probes; poll step "
        f"{step['p50_ms']:.2f} ms; background {achieved:,.0f} events/s"
    )
    figure = "freshness p99 at 1,000 events/s"
    if errors:
        figure += f" ({len(errors)} probes failed)"
        outcome.failures.append(f"freshness: {len(errors)} probes failed: {errors[0]}")
    limit = "poll step p50 (read + 2 ms)"
    outcome.rows += [
        Row("freshness", "freshness p50", fresh["p50_ms"], "ms", limit, step["p50_ms"]),
        Row("freshness", figure, fresh["p99_ms"], "ms", limit, step["p50_ms"],
            (Target("value", "<=", 50.0, "<= 50 ms"),)),
        Row("freshness", "  probe command answered p50", outcome.details["accepted"]["p50_ms"],
            "ms"),
    ]  # fmt: skip
    bg_errors = int(background.get("errors", 0))
    bg_figure = "background writes" + (f" ({bg_errors} errors)" if bg_errors else "")
    if bg_errors:
        examples = background.get("error_examples") or [""]
        outcome.failures.append(
            f"freshness: background writes: {bg_errors} bad answers: {examples[0][:300]}"
        )
    outcome.rows.append(
        Row("freshness", bg_figure, achieved, "/s", "asked (events/s)", EVENTS_PER_SECOND,
            (Target("ratio", ">=", 0.95, ">= 0.95x asked"),))
    )  # fmt: skip
