"""`profiles relay`: every stored domain event, in store order, to the profile-events topic.

Each page of the notification log is decoded with the application's mapper (so personal fields
are decrypted with the customer's key, or read as None once it is shredded), published with an
idempotent producer, flushed, and only then is the relay's cursor moved in Postgres. A crash
between the flush and the cursor move publishes that page again when the relay restarts:
delivery is at least once, in order per key, and each record carries its store `position`, by
which a consumer drops what it has seen.

Records are keyed by the stream id (a uuid5 of the customer id, the store's originator_id), not
by the raw customer id, which is personal data: a key stays in the topic after its customer is
forgotten. A customer's erasure is published as its ProfileErased record followed by a tombstone
(null value) for the key, so a compacted topic drops everything it held on them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Protocol
from uuid import UUID

import orjson

from adapters.event_store import ProfileRecorder
from adapters.kafka_io import Publisher
from adapters.telemetry import Telemetry
from domain.application import ProfileApplication
from domain.customer import Customer
from domain.event_json import event_data
from domain.normalise import format_utc
from domain.privacy import forgotten
from domain.segment import Segment

logger = logging.getLogger(__name__)

# Remembered stream id -> customer id; a miss costs one query per page for all of its misses.
NAMES_KEPT = 100_000
SEGMENT_EVENTS = (Segment.Defined, Segment.Redefined, Segment.Retired)


class Wakeup(Protocol):
    def wait(self, timeout: float) -> None: ...


class EventRelay:
    def __init__(
        self,
        app: ProfileApplication,
        publisher: Publisher,
        topic: str,
        *,
        page: int = 1_000,
        telemetry: Telemetry | None = None,
    ) -> None:
        if not isinstance(app.recorder, ProfileRecorder):
            raise TypeError("the relay needs the Postgres ProfileRecorder for its cursor")
        self.app = app
        self.recorder: ProfileRecorder = app.recorder
        self.publisher = publisher
        self.topic = topic
        self.page = page
        self.telemetry = telemetry
        self.cursor_name = f"events:{topic}"
        self.position = int(self.recorder.relay_cursor(self.cursor_name) or 0)
        self.head = self.position
        self.names = CustomerNames(app)
        if telemetry is not None:
            telemetry.watch_lag("relay", self._lag)

    def run(self, stop: threading.Event, wakeup: Wakeup, poll_seconds: float) -> None:
        while not stop.is_set():
            try:
                moved = self.step()
            except Exception:
                logger.exception("relay page failed; retrying")
                stop.wait(poll_seconds)
                continue
            if not moved:
                wakeup.wait(poll_seconds)

    def step(self) -> int:
        """Publishes the next page; returns how many events it held (0: caught up)."""
        notifications = self.recorder.select_notifications(
            start=self.position, limit=self.page, inclusive_of_start=False
        )
        self.head = max(self.head, self.recorder.max_notification_id() or 0)
        if not notifications:
            return 0
        mapper: Any = self.app.mapper
        if hasattr(mapper, "prefetch"):
            mapper.prefetch({n.originator_id for n in notifications})
        events = [(n.id, mapper.to_domain_event(n)) for n in notifications]
        self.names.learn([e for _, e in events if not isinstance(e, SEGMENT_EVENTS)])
        records = 0
        for position, event in events:
            records += self._publish(position, event)
        self.publisher.flush()
        last = notifications[-1].id
        self.recorder.move_relay_cursor(self.cursor_name, str(last))
        self.position = last
        if self.telemetry is not None:
            self.telemetry.relay_published.add(records, {"topic": self.topic})
        return len(notifications)

    def _publish(self, position: int, event: Any) -> int:
        uid: UUID = event.originator_id
        key = str(uid).encode()
        value = self.record(position, event)
        self.publisher.produce(self.topic, key, orjson.dumps(value))
        if isinstance(event, Customer.ProfileErased):
            self.publisher.produce(self.topic, key, None)  # tombstone: compaction forgets them
            self.names.forget(uid)
            return 2
        return 1

    def record(self, position: int, event: Any) -> dict[str, Any]:
        """The published value; personal fields of a forgotten event are None."""
        uid: UUID = event.originator_id
        stream = "segment" if isinstance(event, SEGMENT_EVENTS) else "customer"
        erased = forgotten(event) or isinstance(event, Customer.ProfileErased)
        return {
            "position": position,
            "stream": stream,
            "streamId": str(uid),
            "customerId": None if stream == "segment" or erased else self.names.known.get(uid),
            "version": event.originator_version,
            "type": type(event).__name__,
            "recordedAt": format_utc(event.timestamp),
            "personalDataErased": forgotten(event),
            "data": event_data(event),
        }

    def _lag(self) -> list[tuple[float, Mapping[str, str | int]]]:
        return [(max(self.head - self.position, 0), {"relay": self.topic})]


class CustomerNames:
    """Stream id -> customer id, from each stream's Registered event (None once erased: the
    key that sealed the id is gone). Misses cost one query for all of a page's streams."""

    def __init__(self, app: ProfileApplication) -> None:
        self.app = app
        assert isinstance(app.recorder, ProfileRecorder)
        self.recorder: ProfileRecorder = app.recorder
        self.known: dict[UUID, str | None] = {}

    def learn(self, events: Iterable[Any]) -> None:
        """Makes `known` hold every customer stream of these events."""
        if len(self.known) > NAMES_KEPT:
            self.known.clear()
        unknown: set[UUID] = set()
        for event in events:
            if isinstance(event, Customer.Registered):
                self.known[event.originator_id] = event.customer_id
            elif event.originator_id not in self.known:
                unknown.add(event.originator_id)
        self.lookup(unknown)

    def lookup(self, uids: Collection[UUID]) -> dict[UUID, str | None]:
        """Reads the ids not known yet; returns those asked for."""
        missing = [u for u in uids if u not in self.known]
        for stored in self.recorder.first_events(missing):
            first = self.app.mapper.to_domain_event(stored)
            if isinstance(first, Customer.Registered):
                self.known[first.originator_id] = first.customer_id
        return {u: self.known.get(u) for u in uids}

    def forget(self, uid: UUID) -> None:
        self.known[uid] = None
