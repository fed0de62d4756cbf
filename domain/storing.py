"""How a shared transaction's events reach the store: what Application.save does, made lean.

A mixin of ProfileApplication. The library's save checks each aggregate against runtime
Protocols, maps events one at a time, and builds a Recording and a Notification (frozen
dataclasses) per event; at thousands of events a second those cost more than the insert.
Here a mapper that can map a whole transaction at once (BatchMapper) does so, and the caller
gets back only what it uses: each event's position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.application import Application

from domain.customer import Customer
from domain.ports import BatchMapper


class EventStoring(Application[UUID]):
    def _store(
        self, touched: Sequence[Customer], **kwargs: Any
    ) -> list[tuple[UUID | str, int, int]]:
        """Stores the customers' pending events in one transaction, with `kwargs` for the
        recorder (claims, shredding, offsets); (stream id, version, position) per event."""
        events = [event for customer in touched for event in customer.collect_events()]
        mapper = self.mapper
        if isinstance(mapper, BatchMapper):
            stored = mapper.to_stored_events(events)
        else:
            stored = [mapper.to_stored_event(event) for event in events]
        positions = self.recorder.insert_events(stored, **kwargs) or ()
        # As Application._record: the committed aggregates are the cache's from now on.
        cache = self.repository.cache
        if cache is not None and not self.repository.fastforward:
            for customer in touched:
                cache.put(customer.id, customer)
        return [
            (s.originator_id, s.originator_version, position)
            for s, position in zip(stored, positions, strict=True)
        ]
