"""The profiles application: the use cases, each turning commands into stored events.

Commands arrive in *units* (one GraphQL mutation, one Kafka batch entry); a unit is all or
nothing. `execute` runs many units in one transaction, which is what makes group commit fast:
the events table is written under a table lock, so throughput comes from events per commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from uuid import UUID

from eventsourcing.domain import Snapshot
from eventsourcing.persistence import (
    IntegrityError,
    JSONTranscoder,
    Mapper,
    PersistenceError,
    ProgrammingError,
)

from domain.audit_cases import AuditCases
from domain.batch import Batch, Outcome
from domain.commands import (
    ChangeConsent,
    Command,
    CommandResult,
    EraseProfile,
    RecordInteraction,
    UpdateTraits,
    event_id_of,
)
from domain.consent import ConsentModel
from domain.errors import Conflict, DomainError, NotFound, StoreUnavailable
from domain.ids import customer_uuid
from domain.loading import CustomerLoading
from domain.ports import (
    ClaimedEvent,
    Clock,
    EventIdClaim,
    EventIndex,
    PersonalDataVault,
    SourceOffsets,
)
from domain.segment_cases import SegmentCases
from domain.storing import EventStoring
from domain.transcodings import ConsentStateAsDict

logger = logging.getLogger(__name__)


class _UnitFailed(Exception):
    def __init__(self, unit: int, error: DomainError) -> None:
        self.unit = unit
        self.error = error


def utc_now() -> datetime:
    return datetime.now(UTC)


class ProfileApplication(CustomerLoading, EventStoring, SegmentCases, AuditCases):
    name = "profiles"
    snapshot_class = Snapshot

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        clock: Clock = utc_now,
        consent_model: ConsentModel = ConsentModel.OPT_OUT,
        snapshot_interval: int = 100,
        retries: int = 3,
        vault: PersonalDataVault | None = None,
    ) -> None:
        # Set first: the library builds the mapper inside __init__.
        self.vault = vault
        super().__init__(env)
        self.clock = clock
        self.consent_model = consent_model
        self.snapshot_interval = snapshot_interval
        self.retries = retries
        if not isinstance(self.recorder, EventIndex):
            raise TypeError(
                f"{type(self.recorder).__name__} cannot remember interaction eventIds; configure "
                "APPLICATION_RECORDER_TOPIC with a recorder that implements EventIndex"
            )
        self.event_index: EventIndex = self.recorder
        self.events_written = 0  # monotonic; metrics read the difference

    def construct_mapper(self) -> Mapper[UUID]:
        if self.vault is None:
            return super().construct_mapper()
        return self.vault.mapper(self.construct_transcoder())

    def close(self) -> None:
        super().close()
        if self.vault is not None:
            self.vault.close()

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(ConsentStateAsDict())

    # ---------------------------------------------------------------- use cases

    def record_interaction(self, command: RecordInteraction) -> CommandResult:
        return self._one([command])[0]

    def record_interactions(self, commands: Sequence[RecordInteraction]) -> list[CommandResult]:
        return self._one(commands)

    def update_traits(self, command: UpdateTraits) -> CommandResult:
        return self._one([command])[0]

    def grant_consent(self, command: ChangeConsent) -> CommandResult:
        return self._one([command])[0]

    def withdraw_consent(self, command: ChangeConsent) -> CommandResult:
        return self._one([command])[0]

    def erase_profile(self, command: EraseProfile) -> CommandResult:
        """Records the erasure and shreds the customer's key in the same commit. Sending it
        again is a no-op (duplicate: true), so a request that timed out can be repeated."""
        return self._one([command])[0]

    def _one(self, unit: Sequence[Command]) -> list[CommandResult]:
        outcome = self.execute([unit])[0]
        if isinstance(outcome, DomainError):
            raise outcome
        return outcome

    # ---------------------------------------------------------------- shared transaction

    def execute(
        self,
        units: Sequence[Sequence[Command]],
        *,
        offsets: SourceOffsets | None = None,
        before_commit: Callable[[Mapping[int, DomainError]], None] | None = None,
        positions: bool = True,
    ) -> list[Outcome]:
        """Runs the units in one transaction, retrying when another writer got there first.

        `offsets` commit with the events (even when the units wrote none), so a consumer of an
        outside log stores each message's effect and its position together. `before_commit`
        hears which units failed just before the write: a consumer dead-letters them there,
        so that a crash after the commit cannot lose them. Without `positions` the results
        carry position 0: a caller that only counts what failed (the Kafka ingest) saves
        matching every result to its stored event.
        """
        failed: dict[int, DomainError] = {}
        attempt = 0
        while attempt <= self.retries:
            batch = Batch()
            try:
                outcomes, stored = self._execute_once(units, batch, failed, offsets, before_commit)
                if positions:
                    batch.fill_positions(outcomes, {(uid, v): at for uid, v, at in stored})
                    self._point_unwritten_at_latest(outcomes)
                return outcomes
            except _UnitFailed as failure:
                # The unit half-changed aggregates: start over without it. Only the changed
                # ones are reloaded; the others in the cache are as committed.
                self._forget(batch, changed_only=True)
                failed[failure.unit] = failure.error
                continue
            except IntegrityError:
                # A stale cached aggregate or an eventId claimed meanwhile: reload and decide again.
                self._forget(batch)
                attempt += 1
            except BaseException as error:
                # Nothing was committed, but cached aggregates may hold the uncommitted changes.
                self._forget(batch)
                if isinstance(error, PersistenceError) and not isinstance(error, ProgrammingError):
                    said = (str(error).strip().splitlines() or [type(error).__name__])[0]
                    raise StoreUnavailable(f"the event store did not answer: {said}") from None
                raise
        raise Conflict(
            f"concurrent writes to the same customers kept conflicting after {self.retries} "
            "retries; nothing was written, send the command again"
        )

    def _execute_once(
        self,
        units: Sequence[Sequence[Command]],
        batch: Batch,
        failed: dict[int, DomainError],
        offsets: SourceOffsets | None = None,
        before_commit: Callable[[Mapping[int, DomainError]], None] | None = None,
    ) -> tuple[list[Outcome], list[tuple[UUID | str, int, int]]]:
        """The outcomes, and (stream id, version, position) of each event stored."""
        now = self.clock()
        if now.utcoffset() is None:
            raise ValueError("the application clock must return aware UTC datetimes")
        known = self._preload(
            [customer_uuid(c.customer_id) for unit in units for c in unit],
            batch,
            [e for unit in units for c in unit if (e := event_id_of(c)) is not None],
        )
        outcomes: list[Outcome] = []
        for u, unit in enumerate(units):
            if u in failed:
                outcomes.append(failed[u])
                continue
            results: list[CommandResult] = []
            registered = batch.registered
            try:
                for i, command in enumerate(unit):
                    results.append(self._apply(command, (u, i), batch, known, now))
            except DomainError as error:
                if results or batch.registered != registered:
                    raise _UnitFailed(u, error) from None
                # Commands check before they record: a unit refused at its first command,
                # having created no customer, left nothing behind, so the batch goes on.
                failed[u] = error
                outcomes.append(error)
                continue
            outcomes.append(results)
        touched = [c for c in batch.customers.values() if c is not None and c.pending_events]
        if before_commit is not None:
            before_commit(dict(failed))
        if touched or offsets is not None or batch.claims:
            if self.vault is not None:
                self.vault.prepare([c.id for c in touched])
            stored = self._store(
                touched,
                claims=list(batch.claims.values()),
                shred=sorted(batch.erased),
                offsets=offsets,
            )
            if self.vault is not None and batch.erased:
                self.vault.forget(batch.erased)
            self.events_written += len(stored)
            self._take_due_snapshots(batch, touched)
        else:
            stored = []
        return outcomes, stored

    def _apply(
        self,
        command: Command,
        slot: tuple[int, int],
        batch: Batch,
        known: dict[str, ClaimedEvent],
        now: datetime,
    ) -> CommandResult:
        cid = command.customer_id
        if isinstance(command, EraseProfile):
            return self._erase(command, slot, batch, now)
        customer = self._load_live(cid, batch)  # an erased customer's commands are refused
        event_id = command.event_id
        if event_id is not None:
            seen = known.get(event_id)
            if seen is not None:
                return CommandResult(cid, seen.version, seen.position, duplicate=True)
            if event_id in batch.claims:
                batch.duplicates_in_batch[slot] = event_id
                return CommandResult(cid, 0, 0, duplicate=True)
        if isinstance(command, RecordInteraction):
            allowed = (
                customer.tracking_allowed(self.consent_model)
                if customer is not None
                else self.consent_model is ConsentModel.OPT_OUT
            )
            if not allowed:
                return CommandResult(cid, customer.version if customer else 0, 0, suppressed=True)
            customer = customer or self._register(cid, batch, now)
            customer.record_interaction(
                event_id=command.event_id,
                type=command.type,
                occurred_at=command.occurred_at,
                session_id=command.session_id,
                channel=command.channel,
                properties=command.properties,
                currency=command.currency,
                at=now,
            )
        elif isinstance(command, UpdateTraits):
            customer = customer or self._register(cid, batch, now)
            customer.update_traits(command.traits, source=command.source, at=now)
        else:
            customer = customer or self._register(cid, batch, now)
            customer.change_consent(
                command.purpose,
                granted=command.granted,
                source=command.source,
                policy_version=command.policy_version,
                occurred_at=command.occurred_at,
                at=now,
            )
        if event_id is not None:
            # Claimed even when nothing changed (traits as they were): it points at the
            # customer's latest event then, and a retry is answered as a duplicate of it.
            batch.claims[event_id] = EventIdClaim(event_id, customer.id, customer.version)
        batch.pending[slot] = (customer.id, customer.version)
        return CommandResult(cid, customer.version, 0)

    def _erase(
        self, command: EraseProfile, slot: tuple[int, int], batch: Batch, now: datetime
    ) -> CommandResult:
        cid = command.customer_id
        customer = self._load(cid, batch)
        if customer is None:
            raise NotFound(f"customer {cid!r} has no profile; there is nothing to erase")
        if customer.erased:
            return CommandResult(cid, customer.version, 0, duplicate=True)
        customer.erase(reason=command.reason, requested_by=command.requested_by, at=now)
        batch.erased.add(customer.id)
        batch.pending[slot] = (customer.id, customer.version)
        return CommandResult(cid, customer.version, 0)
