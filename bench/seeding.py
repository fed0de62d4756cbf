"""Seeded customers and live read models for the query-side scenarios (abuse, query, freshness).

Customers are seeded through the command side (/commands/graphql): traits, EMAIL,
PERSONALIZATION and ANALYTICS consent, and 3-12 interactions each, in one mutation per
customer. A projector process (`python -m api.cli project`) makes the read models, and
`projected` waits on the query side (/graphql) until they hold every seeded customer.

`seeded_stack` puts it together for a scenario that reads one process and writes through
another: a role "commands" service, a role "query" service and a projector, all on one
scenario database and Redis namespace.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from adapters.settings import Settings
from bench.common import Bench, say
from bench.service import ROOT, ServiceProcess, child_env, stop

# What an ESP's send-time hook asks for (the typical selection).
PROFILE_SELECTION = (
    "traits canEmail canPersonalize engagementScore segments interactionCounts lastSeenAt "
    "recentInteractions(first: 5) { type occurredAt }"
)
PROFILE = f"query($id: ID!) {{ profile(customerId: $id) {{ {PROFILE_SELECTION} }} }}"
SEED = (
    "mutation($t: TraitsInput!, $e: ConsentInput!, $p: ConsentInput!, $a: ConsentInput!, "
    "$i: [InteractionInput!]!) { t: updateTraits(input: $t) { position } "
    "e: grantConsent(input: $e) { position } p: grantConsent(input: $p) { position } "
    "a: grantConsent(input: $a) { position } i: recordInteractions(inputs: $i) { position } }"
)
DEFINE = "mutation($s: SegmentInput!) { defineSegment(input: $s) { position } }"
STATUS = "{ projections { name lag } segments { id size } }"
TYPES = ["page_view", "page_view", "product_view", "add_to_cart", "purchase"]
# The query-side scenarios' segments: event rules of each kind and a score rule (the seeded
# interactions are 1 min to 1 day old, each weighs 3.8 on average: about half score >= 30).
ESP_SEGMENTS: dict[str, Any] = {
    "viewers": {"event": {"type": "page_view"}},
    "browsers": {"event": {"type": "product_view", "atLeast": 2}},
    "carters": {"event": {"type": "add_to_cart"}},
    "buyers": {"event": {"type": "purchase"}},
    "engaged": {"score": {"op": "gte", "value": 30}},
}


def post(url: str, query: str, variables: dict[str, Any], timeout: float = 30) -> Any:
    """One GraphQL POST; its `data`, or RuntimeError naming the errors."""
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(url, body, {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    if answer.get("errors"):
        raise RuntimeError(f"{query[:40]}...: {answer['errors']}")
    return answer["data"]


def rss_mb(pid: int) -> float:
    """VmRSS of a process in MB (MiB), from /proc (NaN where there is none)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return float("nan")


def seed_one(url: str, customer: str, rng: random.Random, source: str) -> None:
    """Traits, three consents and 3-12 interactions of one customer, in one mutation."""
    now = datetime.now(UTC)
    consent = {"customerId": customer, "source": source}
    interactions = [
        {
            "eventId": f"{customer}-{n}",
            "customerId": customer,
            "type": rng.choice(TYPES),
            "occurredAt": (now - timedelta(seconds=rng.randint(60, 86_400))).isoformat(),
            "channel": "web",
            "properties": {"productId": f"sku-{rng.randint(1, 500)}", "value": 19.9},
        }
        for n in range(rng.randint(3, 12))
    ]
    variables = {
        "t": {
            "customerId": customer,
            "traits": {"firstName": "Ada", "email": f"{customer}@example.com", "country": "DE"},
        },
        "e": {**consent, "purpose": "EMAIL"},
        "p": {**consent, "purpose": "PERSONALIZATION"},
        "a": {**consent, "purpose": "ANALYTICS"},
        "i": interactions,
    }
    post(url, SEED, variables)


def seed_checked(
    base: str, customers: list[str], segments: Mapping[str, Any], source: str
) -> float:
    """Defines the segments and seeds the customers through `base`'s command side, 8 at a
    time; returns the seconds it took (a failed seed raises: the scenario's crash, named)."""
    url = f"{base}/commands/graphql"
    for segment, rule in segments.items():
        post(url, DEFINE, {"s": {"id": segment, "name": segment, "rule": rule}})
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        futures = [
            pool.submit(seed_one, url, c, random.Random(n), source) for n, c in enumerate(customers)
        ]
        for future in futures:
            future.result()
    return time.monotonic() - started


def projected(
    base: str, customers: list[str], segments: Mapping[str, Any], timeout: float
) -> tuple[float, dict[str, int]]:
    """(seconds until `base`'s read models have every seeded customer: lag 0, the last one
    read, each segment with members; the segments' sizes)."""
    url = f"{base}/graphql"
    started = time.monotonic()
    state: dict[str, Any] = {}
    while time.monotonic() - started < timeout:
        state = post(url, STATUS, {})
        found = post(url, PROFILE, {"id": customers[-1]})["profile"]
        lags = [p["lag"] for p in state["projections"]]
        sizes = {s["id"]: s["size"] for s in state["segments"]}
        if lags and not any(lags) and found and len(sizes) == len(segments) and all(sizes.values()):
            return time.monotonic() - started, sizes
        time.sleep(0.5)
    raise RuntimeError(f"the projector did not catch up within {timeout:.0f}s: {state}")


def service_env(settings: Settings) -> dict[str, str]:
    """The environment a service, projector or helper process gets for `settings`."""
    return child_env(
        DATABASE_URL=str(settings.database_url),
        REDIS_URL=str(settings.redis_url),
        PROFILES_REDIS_NAMESPACE=settings.redis_namespace,
    )


def projector(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`python -m api.cli project` in a process of its own."""
    command = [sys.executable, "-m", "api.cli", "project"]
    return subprocess.Popen(command, cwd=ROOT, env=env)


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    commands: ServiceProcess  # role "commands": seeding and background writes
    query: ServiceProcess  # role "query": the process under measurement
    projector: subprocess.Popen[bytes]
    customers: list[str]
    sizes: dict[str, int]
    seed_seconds: float
    project_seconds: float

    def details(self) -> dict[str, Any]:
        return {
            "customers": len(self.customers),
            "segment_sizes": self.sizes,
            "seed_seconds": self.seed_seconds,
            "project_seconds": self.project_seconds,
        }


@contextmanager
def seeded_stack(
    bench: Bench, label: str, count: int, segments: Mapping[str, Any] = ESP_SEGMENTS
) -> Iterator[Stack]:
    """A projector, a commands and a query service on a fresh database, with `count`
    customers seeded and projected; everything stopped on exit."""
    settings = bench.settings_for(bench.new_database(label))
    env = service_env(settings)
    customers = [f"{label}-{uuid.uuid4().hex[:12]}" for _ in range(count)]
    with ExitStack() as stack:
        process = projector(env)
        stack.callback(stop, process)
        commands = stack.enter_context(ServiceProcess(settings, role="commands"))
        query = stack.enter_context(ServiceProcess(settings, role="query"))
        say(f"{label}: seeding {count:,} customers, {len(segments)} segments")
        seeded = seed_checked(commands.base, customers, segments, f"bench-{label}")
        caught_up, sizes = projected(query.base, customers, segments, 300.0)
        say(f"{label}:   seeded in {seeded:.1f}s, projected {caught_up:.1f}s later: {sizes}")
        yield Stack(settings, env, commands, query, process, customers, sizes, seeded, caught_up)
