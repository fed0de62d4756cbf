"""`python -m bench.background_writes CONFIG.json`: paced recordInteractions batches, until told.

Sends `batch` interactions per request, `events_per_second / batch` requests a second, on a
few keep-alive connections (bench.paced_get's paced loop), each interaction with an eventId of
its own for a random customer of `customers`, occurredAt 1-30 s ago. Stops on SIGTERM (or
after `max_seconds`) and prints what bench.paced_get prints, plus events_per_second.
An answer with errors, a duplicate or a suppressed interaction counts as an error.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.paced_get import PacedConfig, drive, request_bytes

WRITE = (
    "mutation($i: [InteractionInput!]!) { recordInteractions(inputs: $i) { duplicate suppressed } }"
)
TYPES = ["page_view", "page_view", "product_view", "add_to_cart", "purchase"]
BAD = ['"errors"', '"duplicate":true', '"duplicate": true', '"suppressed":true',
       '"suppressed": true']  # fmt: skip


@dataclass
class BackgroundConfig:
    port: int
    customers: list[str]
    run: str  # makes the eventIds unique to this run
    events_per_second: float = 1_000.0
    batch: int = 50
    connections: int = 4
    max_seconds: float = 600.0
    host: str = "127.0.0.1"


def main(path: str) -> None:
    config = BackgroundConfig(**json.loads(Path(path).read_text()))
    paced = PacedConfig(
        port=config.port,
        mode="paced",
        rate=config.events_per_second / config.batch,
        connections=config.connections,
        duration=config.max_seconds,
        warmup=0.0,
        timeout=30.0,
        bad=BAD,
        host=config.host,
    )

    def make(rng: random.Random, n: int) -> bytes:
        now = datetime.now(UTC)
        inputs = [
            {
                "eventId": f"{config.run}-bg-{n}-{k}",
                "customerId": rng.choice(config.customers),
                "type": rng.choice(TYPES),
                "occurredAt": (now - timedelta(seconds=rng.uniform(1, 30))).isoformat(),
                "channel": "web",
                "properties": {"productId": f"sku-{rng.randint(1, 500)}", "value": 19.9},
            }
            for k in range(config.batch)
        ]
        body = json.dumps({"query": WRITE, "variables": {"i": inputs}})
        return request_bytes(config.host, "POST", "/commands/graphql", body)

    result = drive(paced, make)
    ok = result["completed"] - result["errors"]
    result["events_per_second"] = ok * config.batch / result["seconds"]
    result["batch"] = config.batch
    print(json.dumps(result))


class BackgroundWrites:
    """The writer in a process of its own: started on creation, `finish()` stops it and
    returns what it printed."""

    def __init__(self, config: BackgroundConfig) -> None:
        from bench.service import ROOT, child_env

        fd, name = tempfile.mkstemp(suffix=".json", prefix="bench-bg-")
        self._path = Path(name)
        with os.fdopen(fd, "w") as file:
            json.dump(asdict(config), file)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.background_writes", name],
            cwd=ROOT,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self) -> dict[str, Any]:
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            out, err = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
        finally:
            self._path.unlink(missing_ok=True)
        if self.process.returncode != 0:
            raise RuntimeError(f"background writes failed ({self.process.returncode}):\n{err}")
        result: dict[str, Any] = json.loads(out)
        return result

    def __enter__(self) -> BackgroundWrites:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process.poll() is None:  # not finished: the scenario failed on its way
            self.process.kill()
            self.process.communicate()
        self._path.unlink(missing_ok=True)


if __name__ == "__main__":
    main(sys.argv[1])
