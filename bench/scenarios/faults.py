"""`faults`: how long the commands side takes to answer when Postgres fails, and to recover.

The service (commands role, default deadline) reaches Postgres through a proxy that injects
the faults (`bench/pg_proxy.py`). Each answer time stands beside what bounds it in the same
run: the deadline for a frozen store and a held lock, the store's own return (a plain
connection through the proxy succeeding) for the first command after an outage, a normal
command for one whose reply was lost after the commit.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from adapters.settings import Settings
from bench.common import Bench, latency_summary, median_ms, say
from bench.pg_proxy import PostgresProxy
from bench.report import Row, Target
from bench.scenarios import Outcome
from bench.service import ServiceProcess

RECORD = "mutation($i: InteractionInput!) { recordInteraction(input: $i) { position duplicate } }"
DEADLINE_MS = Settings().deadline_seconds * 1_000
WITHIN_DEADLINE = Target("value", "<=", DEADLINE_MS, f"<= {DEADLINE_MS / 1000:.0f} s")
RECOVERY = Target("value", "<=", 2_000, "<= 2 s after the store")


class Client:
    def __init__(self, base: str) -> None:
        self.url = f"{base}/commands/graphql"
        self.occurred = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()

    def record(self, event_id: str, customer: str = "bench-faults") -> tuple[float, str]:
        """(seconds to the answer, "ok" or the error code)."""
        variables = {
            "i": {
                "eventId": event_id,
                "customerId": customer,
                "type": "page_view",
                "occurredAt": self.occurred,
            }
        }
        body = json.dumps({"query": RECORD, "variables": variables}).encode()
        request = urllib.request.Request(
            self.url, body, {"content-type": "application/json"}, method="POST"
        )
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=60) as response:
            answer: dict[str, Any] = json.loads(response.read())
        seconds = time.monotonic() - started
        if answer.get("errors"):
            return seconds, str(answer["errors"][0]["extensions"]["code"])
        return seconds, "ok"


def _connects(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _claimed(url: str, event_id: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT 1 FROM profiles_interaction_ids WHERE event_id = %s", (event_id,)
        ).fetchone()
    return row is not None


def run(bench: Bench) -> Outcome:
    url = bench.new_database("faults")
    proxy = PostgresProxy(url)
    outcome = Outcome()
    try:
        with ServiceProcess(bench.settings_for(proxy.url)) as service:
            client = Client(service.base)
            normal = [client.record(f"warm-{n}")[0] for n in range(30)]
            outcome.details["normal_ms"] = latency_summary(normal)
            _outage(bench, proxy, client, outcome)
            _one_command_under(
                "frozen", "Postgres frozen", _frozen_store(proxy), client, url, outcome
            )
            _one_command_under(
                "locked", "events table locked", _locked_table(url), client, url, outcome
            )
            _lost_reply(proxy, client, url, median_ms(normal), outcome)
    finally:
        proxy.close()
    return outcome


def _outage(bench: Bench, proxy: PostgresProxy, client: Client, outcome: Outcome) -> None:
    seconds = bench.pick(40.0, 5.0)
    say(f"faults: Postgres unreachable for {seconds:.0f}s, a command every 0.25 s meanwhile")
    proxy.cut()
    ended = time.monotonic() + seconds
    answers: list[float] = []
    codes: set[str] = set()
    while time.monotonic() < ended:
        took, answer = client.record(f"outage-{uuid.uuid4().hex}")
        answers.append(took)
        codes.add(answer)
        time.sleep(0.25)
    proxy.restore()
    back = time.monotonic()
    while not _connects(proxy.url):
        time.sleep(0.01)
    store = time.monotonic() - back
    while client.record(f"after-{uuid.uuid4().hex}")[1] != "ok":
        time.sleep(0.02)
    first = time.monotonic() - back
    down = latency_summary(answers)
    say(
        f"faults:   UNAVAILABLE answers p99 {down['p99_ms']:.0f} ms ({len(answers)}); "
        f"first success {first * 1000:.0f} ms after the store (which took {store * 1000:.0f} ms)"
    )
    outcome.details["outage"] = {
        "seconds": seconds,
        "answers_ms": down,
        "codes": sorted(codes),
        "store_back_ms": store * 1000,
        "first_success_ms": first * 1000,
    }
    if codes != {"UNAVAILABLE"}:
        outcome.failures.append(f"faults: answers during the outage were {sorted(codes)}")
    outcome.rows += [
        Row("faults", f"outage {seconds:.0f}s: UNAVAILABLE p99", down["p99_ms"], "ms",
            "deadline", DEADLINE_MS, [WITHIN_DEADLINE]),
        Row("faults", "  first command after it", first * 1000, "ms",
            "store accepts connections", store * 1000, [RECOVERY]),
    ]  # fmt: skip


@contextlib.contextmanager
def _frozen_store(proxy: PostgresProxy) -> Iterator[None]:
    proxy.freeze()
    try:
        yield
    finally:
        proxy.thaw()


@contextlib.contextmanager
def _locked_table(url: str) -> Iterator[None]:
    with psycopg.connect(url) as holder:
        holder.execute("LOCK TABLE profiles_events")  # ACCESS EXCLUSIVE: reads wait too
        yield
        holder.rollback()


def _one_command_under(
    name: str, label: str, fault: AbstractContextManager[None], client: Client, url: str,
    outcome: Outcome,
) -> None:  # fmt: skip
    """One command while the fault lasts: UNAVAILABLE by the deadline, and still not stored
    a second after the fault ends (what the server received then must not commit)."""
    say(f"faults: {label}, one command")
    event_id = f"{name}-{uuid.uuid4().hex}"
    with fault:
        took, answer = client.record(event_id)
    time.sleep(1.0)
    stored = _claimed(url, event_id)
    say(f"faults:   answered {answer} in {took * 1000:.0f} ms; stored afterwards: {stored}")
    outcome.details[name] = {"answer": answer, "ms": took * 1000, "stored_later": stored}
    if answer != "UNAVAILABLE" or stored:
        outcome.failures.append(f"faults: {label}: answered {answer}, stored later: {stored}")
    outcome.rows.append(
        Row("faults", f"{label}: answer", took * 1000, "ms", "deadline", DEADLINE_MS,
            [WITHIN_DEADLINE])
    )  # fmt: skip


def _lost_reply(
    proxy: PostgresProxy, client: Client, url: str, normal_ms: float, outcome: Outcome
) -> None:
    say("faults: the reply to a committed write lost, one command")
    event_id = f"lost-{uuid.uuid4().hex}"
    # The batch's read names the eventId first, then its write claims it.
    proxy.lose_next_reply(event_id.encode(), skip=1)
    took, answer = client.record(event_id)
    stored = _claimed(url, event_id)
    say(f"faults:   answered {answer} in {took * 1000:.0f} ms; stored: {stored}")
    outcome.details["lost_reply"] = {
        "answer": answer,
        "ms": took * 1000,
        "stored": stored,
        "replies_lost": proxy.replies_lost,
    }
    if proxy.replies_lost != 1 or answer != "ok" or not stored:
        outcome.failures.append(f"faults: lost reply answered {answer}, stored: {stored}")
    outcome.rows.append(
        Row("faults", "reply lost after commit: answer", took * 1000, "ms", "normal command",
            normal_ms)
    )  # fmt: skip
