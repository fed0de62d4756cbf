"""History length stays off the command path: a long-lived customer loads from its snapshot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from adapters.event_store import ProfileRecorder
from adapters.settings import Settings
from adapters.store_config import application_env
from domain.application import ProfileApplication
from domain.commands import RecordInteraction


class CountingRecorder(ProfileRecorder):
    """The real recorder, counting the events it hands back to aggregates."""

    events_read = 0

    def select_events(self, originator_id: UUID | str, **kwargs: Any) -> Sequence[StoredEvent]:
        events = super().select_events(originator_id, **kwargs)
        CountingRecorder.events_read += len(events)
        return events


def app_for(settings: Settings) -> ProfileApplication:
    env = application_env(settings)
    env["APPLICATION_RECORDER_TOPIC"] = f"{__name__}:CountingRecorder"
    return ProfileApplication(env, snapshot_interval=settings.snapshot_interval)


def interaction(n: int, now: datetime) -> RecordInteraction:
    raw = {"eventId": f"e-{n}", "customerId": "c-1", "type": "page_view", "occurredAt": now}
    return RecordInteraction.parse(raw, now=now, field="input")


def test_a_customer_with_2000_events_loads_from_its_latest_snapshot(settings: Settings) -> None:
    settings = replace(settings, snapshot_interval=100)
    now = datetime.now(UTC)
    writer = app_for(settings)
    for start in range(0, 2_050, 500):
        writer.execute([[interaction(n, now)] for n in range(start, min(start + 500, 2_050))])
    writer.close()
    CountingRecorder.events_read = 0
    fresh = app_for(settings)  # a new process would start like this: empty cache
    result = fresh.record_interaction(interaction(9_999, now))
    customer = fresh.customer_at("c-1")
    fresh.close()
    assert result.version == 2_052 and customer is not None
    assert customer.interaction_count == 2_051
    # Snapshot at 2,000 (a multiple of 100), then 51 events: not 2,051.
    assert CountingRecorder.events_read <= 100
