"""Segment membership changes to the segment-changes topic.

The segment read model appends each change to a capped Redis stream in the same script call
that changes the membership (`projections.ops.Append`), so the log and the read model agree.
This relay publishes the stream in order, keyed `segmentId:streamId` (compaction keeps each
customer's latest state per segment), and moves its cursor in Postgres after the flush: at
least once, like the event relay. An erased customer's changes become tombstones.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any
from uuid import UUID

import orjson
import redis

from adapters.kafka_io import Publisher, client_config
from adapters.kafka_relay import CustomerNames
from adapters.settings import Settings
from adapters.telemetry import Telemetry
from domain.application import ProfileApplication

logger = logging.getLogger(__name__)

LAG_CAP = 10_000


class SegmentChangeRelay:
    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        names: CustomerNames,
        publisher: Publisher,
        topic: str,
        *,
        page: int = 1_000,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.client = client
        self.stream = stream
        self.names = names
        self.recorder = names.recorder
        self.publisher = publisher
        self.topic = topic
        self.page = page
        self.telemetry = telemetry
        self.cursor_name = f"stream:{stream}"
        self.position = self.recorder.relay_cursor(self.cursor_name) or "0-0"
        if telemetry is not None:
            telemetry.watch_lag("relay", self._lag)

    @classmethod
    def build(
        cls, settings: Settings, stream: str, app: ProfileApplication, telemetry: Telemetry | None
    ) -> SegmentChangeRelay:
        client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)
        publisher = Publisher(client_config(settings), "relay-segments")
        return cls(
            client,
            stream,
            CustomerNames(app),
            publisher,
            settings.kafka.segment_changes_topic,
            page=settings.kafka.relay_batch,
            telemetry=telemetry,
        )

    def run(self, stop: threading.Event, poll_seconds: float) -> None:
        while not stop.is_set():
            try:
                moved = self.step()
            except Exception:
                logger.exception("segment-changes page failed; retrying")
                moved = 0
            if not moved:
                stop.wait(poll_seconds)

    def step(self) -> int:
        entries = self.client.xrange(self.stream, min=f"({self.position}", count=self.page)
        if not entries:
            return 0
        first = self.client.xinfo_stream(self.stream).get("first-entry")
        if self.position != "0-0" and first and _older(self.position, first[0]):
            logger.error("segment-changes relay fell behind the capped stream; changes lost")
        changes = [fields or {} for _entry_id, fields in entries]
        names = self.names.lookup({UUID(str(c["stream"])) for c in changes})
        for change in changes:
            self._publish(change, names[UUID(str(change["stream"]))])
        self.publisher.flush()
        self.position = str(entries[-1][0])
        self.recorder.move_relay_cursor(self.cursor_name, self.position)
        if self.telemetry is not None:
            self.telemetry.relay_published.add(len(entries), {"topic": self.topic})
        return len(entries)

    def _publish(self, fields: Mapping[Any, Any], customer_id: str | None) -> None:
        key = f"{fields['segment']}:{fields['stream']}".encode()
        if fields.get("erased") or customer_id is None:
            # Erased (now or since): a tombstone, never the id or the membership.
            self.publisher.produce(self.topic, key, None)
            return
        value: dict[str, Any] = {
            "segmentId": fields["segment"],
            "streamId": fields["stream"],
            "customerId": customer_id,
            "member": fields["member"] == "1",
            "at": fields.get("at"),
        }
        self.publisher.produce(self.topic, key, orjson.dumps(value))

    def _lag(self) -> list[tuple[float, Mapping[str, str | int]]]:
        # Counted at scrape time only, and capped: past that the exact figure matters little.
        behind = self.client.xrange(self.stream, min=f"({self.position}", count=LAG_CAP)
        return [(len(behind or ()), {"relay": self.topic})]

    def close(self) -> None:
        self.publisher.close()
        self.client.close()


def _older(position: str, entry_id: str) -> bool:
    """Stream ids compare as (milliseconds, sequence)."""
    a, _, b = position.partition("-")
    c, _, d = entry_id.partition("-")
    return (int(a), int(b or 0)) < (int(c), int(d or 0))
