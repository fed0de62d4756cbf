"""One of two processes that record the same interactions at the same moment (see the race test)."""

from __future__ import annotations

import json
import random
import sys
from datetime import UTC, datetime

from adapters.settings import Settings
from adapters.store_config import build_application
from domain.application import utc_now
from domain.commands import RecordInteraction
from domain.errors import Conflict


def main(database_url: str, seed: int, count: int, out: str, start_file: str) -> None:
    app = build_application(Settings(database_url=database_url), utc_now)
    now = datetime.now(UTC)
    ids = list(range(count))
    random.Random(seed).shuffle(ids)
    commands = [
        RecordInteraction.parse(
            {
                "eventId": f"e-{i}",
                "customerId": f"c-{i % 25}",
                "type": "page_view",
                "occurredAt": now,
            },
            now=now,
            field="input",
        )
        for i in ids
    ]
    while not _started(start_file):  # both processes leave the line together
        pass
    firsts: list[str] = []
    conflicts = 0
    for command in commands:
        while True:
            try:
                result = app.record_interaction(command)
                break
            except Conflict:
                conflicts += 1  # a client would send it again; so do we
        if not result.duplicate:
            firsts.append(command.event_id)
    with open(out, "w") as f:
        json.dump({"firsts": firsts, "conflicts": conflicts}, f)
    app.close()


def _started(path: str) -> bool:
    try:
        with open(path):
            return True
    except FileNotFoundError:
        return False


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
