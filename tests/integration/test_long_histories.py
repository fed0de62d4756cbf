"""History length stays off the command path: a long-lived customer loads from its snapshot."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import UTC, datetime
from uuid import UUID

from adapters.event_store import ProfileRecorder
from adapters.settings import Settings
from adapters.store_config import application_env
from domain.application import ProfileApplication
from domain.commands import RecordInteraction
from domain.ports import BatchRead


class CountingRecorder(ProfileRecorder):
    """The real recorder, counting the stored events (snapshots included) it hands back."""

    events_read = 0

    def read_for_batch(
        self, event_ids: Collection[str], originator_ids: Collection[UUID]
    ) -> BatchRead:
        read = super().read_for_batch(event_ids, originator_ids)
        CountingRecorder.events_read += sum(len(s) for s in read.streams.values())
        return read


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
    # The snapshot at version 2,000 and the 51 events after it: not all 2,051.
    assert 1 < CountingRecorder.events_read <= 101
