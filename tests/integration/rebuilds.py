"""Stores with a history to rebuild, shared by the rebuild tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from adapters.settings import Settings
from adapters.store_config import build_application
from domain.application import ProfileApplication, utc_now
from domain.commands import ChangeConsent, Command
from domain.segment import DefineSegment
from tests.integration.test_projection_invariants import run_commands

ALL = ["profile", "score", "segments"]
SEGMENTS = {
    "viewers": {"event": {"type": "page_view", "atLeast": 2, "within": "P30D"}},
    "buyers": {"all": [{"event": {"type": "purchase"}}, {"score": {"op": "gte", "value": 5}}]},
}


def fixed_clock() -> Callable[[], datetime]:
    # Membership and due times depend on the clock: both builds must judge at one instant.
    now = datetime.now(UTC) + timedelta(hours=1)
    return lambda: now


def seed(app: ProfileApplication, customers: int) -> None:
    now = datetime.now(UTC)
    for segment_id, rule in SEGMENTS.items():
        raw = {"id": segment_id, "name": segment_id.title(), "rule": rule}
        app.define_segment(DefineSegment.parse(raw, field="input"))
    consent: list[list[Command]] = [
        [
            ChangeConsent.parse(
                {"customerId": f"c-{c}", "purpose": "PERSONALIZATION", "source": "form"},
                granted=True,
                now=now,
                field="input",
            )
        ]
        for c in range(customers)
    ]
    app.execute(consent)


def history(settings: Settings, seed_value: int, commands: int) -> int:
    """Segments, 40 consenting customers and random commands (erasures included); the head."""
    app = build_application(settings, utc_now)
    try:
        seed(app, 40)
        run_commands(app, seed=seed_value, count=commands)
        return app.recorder.max_notification_id() or 0
    finally:
        app.close()


def wait_for(check: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)
