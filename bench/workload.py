"""What the scenarios write: interactions as the service receives them, and event-sized rows.

The interaction's properties are chosen so that its stored event is ~320 bytes of JSON, like the
rows of the raw-Postgres limits below (and like the anchors in NOTES-performance.md).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from domain.commands import RecordInteraction

TOPIC = "domain.customer:Customer.InteractionRecorded"
TYPES = ("page_view", "product_view", "add_to_cart", "email_open", "email_click", "purchase")


def customer_id(n: int) -> str:
    return f"c{n:05d}"


def raw_interaction(
    event_id: str, customer: str, occurred_at: datetime, sku: int
) -> dict[str, object]:
    """The camelCase input of one interaction, as GraphQL or Kafka would deliver it."""
    return {
        "eventId": event_id,
        "customerId": customer,
        "type": "product_view",
        "occurredAt": occurred_at.isoformat(),
        "sessionId": f"s{sku:05d}",
        "channel": "web",
        "properties": {
            "sku": f"SKU-{sku:05d}",
            "price": 19.99,
            "currency": "EUR",
            "path": f"/p/{sku:05d}",
        },
    }


class Interactions:
    """Parsed RecordInteraction commands with unique eventIds, customers drawn from a pool."""

    def __init__(self, pool: int, *, seed: int = 1, label: str = "x") -> None:
        self.pool = pool
        self.rng = random.Random(seed)
        self.prefix = f"{label}-{uuid.uuid4().hex[:8]}"
        self.sequence = 0

    def unit(self, size: int, *, customer: str | None = None) -> list[RecordInteraction]:
        """`size` commands, all for `customer` if given, else random customers of the pool."""
        now = datetime.now(UTC)
        occurred = now - timedelta(seconds=30)
        commands = []
        for _ in range(size):
            self.sequence += 1
            who = customer or customer_id(self.rng.randrange(self.pool))
            raw = raw_interaction(
                f"{self.prefix}-{self.sequence}", who, occurred, self.rng.randrange(100_000)
            )
            commands.append(RecordInteraction.parse(raw, now=now, field="input"))
        return commands

    def units(self, count: int, size: int) -> Iterator[list[RecordInteraction]]:
        for _ in range(count):
            yield self.unit(size)


def event_state(sku: int = 12345) -> bytes:
    """A stored InteractionRecorded event's JSON, byte for byte in shape (~320 bytes)."""
    stamp = {"_type_": "datetime_iso", "_data_": datetime.now(UTC).isoformat()}
    state = {
        "timestamp": stamp,
        "event_id": f"bench-{uuid.uuid4().hex[:8]}-{sku}",
        "type": "product_view",
        "occurred_at": stamp,
        "session_id": f"s{sku:05d}",
        "channel": "web",
        "properties": {
            "sku": f"SKU-{sku:05d}",
            "price": 19.99,
            "currency": "EUR",
            "path": f"/p/{sku:05d}",
        },
    }
    return json.dumps(state, separators=(",", ":")).encode()


EventRow = tuple[uuid.UUID, int, str, bytes]


def event_rows(count: int, pool: int = 10_000) -> list[EventRow]:
    """(originator_id, originator_version, topic, state): `pool` streams, versions counting up."""
    streams = [uuid.uuid4() for _ in range(min(pool, count) or 1)]
    state = event_state()
    return [(streams[i % len(streams)], i // len(streams) + 1, TOPIC, state) for i in range(count)]


SCRATCH_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text,
    state bytea,
    notification_id bigserial,
    PRIMARY KEY (originator_id, originator_version)
);
CREATE UNIQUE INDEX IF NOT EXISTS {name}_notification_id_idx ON {name} (notification_id);
"""
