"""Where the write path gets its customers: cache first, then one round trip for the rest.

A mixin of ProfileApplication, kept apart so that the use cases read on their own.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection
from dataclasses import replace
from datetime import datetime
from typing import cast
from uuid import UUID

from eventsourcing.application import Application, project_aggregate
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import PersistenceError

from domain.batch import Batch, Outcome
from domain.customer import Customer
from domain.errors import CustomerErased
from domain.ids import customer_uuid
from domain.ports import ClaimedEvent, EventIndex

logger = logging.getLogger(__name__)


class CustomerLoading(Application[UUID]):
    event_index: EventIndex
    snapshot_interval: int

    def _point_unwritten_at_latest(self, outcomes: list[Outcome]) -> None:
        """A command that wrote nothing (suppressed, no change) returns the position of the
        customer's latest event, so that reading with it as minPosition shows that state."""
        wanted = {
            (customer_uuid(r.id), r.version): None
            for outcome in outcomes
            if isinstance(outcome, list)
            for r in outcome
            if r.position == 0 and r.version > 0
        }
        if not wanted:
            return
        found = self.event_index.find_positions(list(wanted))
        for outcome in outcomes:
            if isinstance(outcome, list):
                for i, r in enumerate(outcome):
                    position = found.get((customer_uuid(r.id), r.version))
                    if r.position == 0 and position:
                        outcome[i] = replace(r, position=position)

    def _load_live(self, customer_id: str, batch: Batch) -> Customer | None:
        customer = self._load(customer_id, batch)
        if customer is not None and customer.erased:
            raise CustomerErased(customer_id)
        return customer

    def _load(self, customer_id: str, batch: Batch) -> Customer | None:
        uid = customer_uuid(customer_id)
        if uid not in batch.customers:
            self._preload([uid], batch)
        return batch.customers[uid]

    def _preload(
        self, uids: Collection[UUID], batch: Batch, event_ids: Collection[str] = ()
    ) -> dict[str, ClaimedEvent]:
        """Loads every customer the batch needs, cache first, and finds which of its eventIds
        are claimed: one round trip for all of it. Two queries per customer, as the library's
        repository makes, kept the commit thread waiting for most of each transaction.
        """
        cache = self.repository.cache
        misses: list[UUID] = []
        for uid in uids:
            if uid in batch.customers:
                continue
            try:
                if cache is None:
                    raise KeyError(uid)
                batch.customers[uid] = cast(Customer, cache.get(uid))
            except KeyError:
                misses.append(uid)
        read = self.event_index.read_for_batch(event_ids, misses)
        for uid in misses:
            stored = read.streams.get(uid, [])
            customer = cast(
                Customer | None,
                project_aggregate(None, map(self.mapper.to_domain_event, stored)),
            )
            if customer is not None and cache is not None:
                cache.put(uid, customer)
            batch.customers[uid] = customer
        for uid in uids:
            customer = batch.customers[uid]
            batch.versions_before.setdefault(uid, customer.version if customer else 0)
        return read.claimed

    def _register(self, customer_id: str, batch: Batch, now: datetime) -> Customer:
        customer = Customer.register(customer_id, at=now)
        batch.customers[customer.id] = customer
        batch.registered += 1
        return customer

    def _take_due_snapshots(self, batch: Batch, touched: list[Customer]) -> None:
        if self.snapshots is None:
            return
        interval = self.snapshot_interval
        due = [
            c
            for c in touched
            if c.version // interval > batch.versions_before.get(c.id, 0) // interval
        ]
        # Taken from the aggregate in hand: no re-read of the stream, whatever its length.
        # The events are committed already, so a failed snapshot must not fail the command.
        if due:
            try:
                self.snapshots.put([Snapshot.take(c) for c in due])
            except PersistenceError:
                logger.warning("snapshot of %d customers not taken", len(due), exc_info=True)

    def _forget(self, batch: Batch, *, changed_only: bool = False) -> None:
        """Drops the batch's customers from the cache (with `changed_only`, those holding
        unsaved events), so the next attempt reloads them as committed."""
        cache = self.repository.cache
        if cache is None:
            return
        for uid, customer in batch.customers.items():
            if changed_only and (customer is None or not customer.pending_events):
                continue
            with contextlib.suppress(KeyError):
                cache.get(uid, evict=True)
