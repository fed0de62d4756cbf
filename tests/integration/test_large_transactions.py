"""A group-committed transaction may hold thousands of events: it must store them, not stall."""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.settings import Settings
from adapters.store_config import build_application
from domain.application import utc_now
from domain.commands import RecordInteraction


def test_one_transaction_of_5000_events_is_stored(settings: Settings) -> None:
    app = build_application(settings, utc_now)
    now = datetime.now(UTC)
    units = [
        [
            RecordInteraction.parse(
                {
                    "eventId": f"e-{n}",
                    "customerId": f"c-{n}",  # new customers: two events each
                    "type": "product_view",
                    "occurredAt": now,
                    "properties": {"productId": f"sku-{n}", "description": "x" * 200},
                },
                now=now,
                field="input",
            )
        ]
        for n in range(2_500)
    ]
    try:
        outcomes = app.execute(units)
        assert app.recorder.max_notification_id() == 5_000
    finally:
        app.close()
    assert all(isinstance(o, list) and o[0].position > 0 for o in outcomes)
