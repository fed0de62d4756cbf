"""The segment-membership read model: per profile its segments, per segment its members.

Membership changes with the events that change a profile's facts, and with time: each profile
is scheduled at the next instant its answer can change (a window sliding past, a score decaying
through a threshold), and `tick` re-evaluates only what is due. A new or changed rule back-fills
existing profiles from the event store while live updates go on (`segment_backfill`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from math import inf
from typing import Any
from uuid import UUID

import orjson

from domain.customer import Customer
from domain.normalise import format_utc
from domain.privacy import forgotten
from domain.score import ScoreModel
from domain.segment import Segment
from projections.ops import Append, Drop, Member, Op, Put, Store
from projections.runner import ApplyOps, PageReader
from projections.segment_backfill import CUSTOMER_EVENTS, Backfill
from projections.segment_eval import Evaluator, score_moved
from projections.segment_keys import NAME as NAME  # re-exported: the API and bench name them here
from projections.segment_keys import SCHEMA, key_text
from projections.segment_keys import SegmentKeys as SegmentKeys
from projections.segment_state import Definition, EventIndex, ProfileFacts

DUE_BATCH = 500
CHANGES_KEPT = 100_000  # stream entries; a relay further behind than this misses some


class SegmentsReadModel(Backfill):
    name = NAME
    schema = SCHEMA

    def __init__(
        self,
        keys: SegmentKeys,
        model: ScoreModel,
        clock: Callable[[], datetime],
        redis: Any,
        *,
        publishing: bool = True,
    ) -> None:
        self.keys = keys
        self.version = keys.version
        # A rebuild derives membership that was announced already: it appends no changes.
        self.publishing = publishing
        self.model = model
        self.clock = clock
        self._redis = redis  # reads facts before changing them; only this projector writes
        self._definitions: dict[str, Definition] | None = None
        self._changed()

    @property
    def tracking_key(self) -> str:
        return self.keys.tracking

    @property
    def key_patterns(self) -> list[str]:
        return self.keys.patterns

    def definitions(self) -> dict[str, Definition]:
        if self._definitions is None:
            stored = self._redis.hgetall(self.keys.definitions)
            self._definitions = {k: Definition.from_json(v) for k, v in stored.items()}
        return self._definitions

    def _reload(self) -> None:
        # What Redis holds is what was committed: a page whose apply failed must not leave
        # its definitions behind in memory. Parsing is cached by the stored text.
        self._definitions = None
        self._changed()

    def _changed(self) -> None:
        """Forgets what is derived from the definitions (computed once per page otherwise)."""
        self._active: list[Definition] | None = None
        self._readers: dict[str, set[str]] = {}
        self._index: EventIndex | None = None
        self._live: tuple[frozenset[str], frozenset[str]] | None = None

    def active(self) -> list[Definition]:
        if self._active is None:
            self._active = [d for d in self.definitions().values() if not d.retired]
        return self._active

    def live(self) -> tuple[frozenset[str], frozenset[str]]:
        """The active definitions' scopes and segment ids."""
        if self._live is None:
            active = self.active()
            self._live = frozenset(d.scope for d in active), frozenset(d.segment_id for d in active)
        return self._live

    def index(self) -> EventIndex:
        if self._index is None:
            self._index = EventIndex.of(self.active())
        return self._index

    # ------------------------------------------------------------------ events

    def page_changes(self, events: Sequence[tuple[int, object]]) -> list[Op]:
        self._reload()
        now = self.clock()
        touched = {e.originator_id for _, e in events if isinstance(e, CUSTOMER_EVENTS)}
        facts = self.load(touched)
        affected: dict[UUID, set[str]] = {uid: set() for uid in facts}
        scores = {uid: profile.score for uid, profile in facts.items()}  # before the page
        ops: list[Op] = []
        for position, event in events:
            if isinstance(event, SEGMENT_EVENTS):
                ops += self._segment_event(event, position)
            elif isinstance(event, CUSTOMER_EVENTS):
                uid = event.originator_id
                affected[uid] |= self._apply(facts[uid], event, now)
        erased = {e.originator_id for _, e in events if isinstance(e, Customer.ProfileErased)}
        judge = Evaluator(self.model, now)
        for uid, profile in facts.items():
            if uid in erased:
                ops += self.erase(uid, profile)
                continue
            affected[uid] |= score_moved(self.active(), self.model, scores[uid], profile.score, now)
            ops += self.settle(uid, profile, judge, affected[uid])
        return ops

    def erase(self, uid: UUID, profile: ProfileFacts) -> list[Op]:
        """Takes the customer out of every member list and forgets its facts and due time."""
        leave: list[Op] = [
            Member(self.keys.members(segment_id), profile.customer_id, False, 0.0)
            for segment_id in profile.segments
        ]
        # The relay turns these into tombstones for their keys.
        forget = [self._change(uid, s, False, None) for s in profile.segments if self.publishing]
        return [
            *leave,
            *forget,
            Drop(self.keys.of(uid)),
            Drop(self.keys.facts(uid)),
            Member(self.keys.due, str(uid), False, 0.0),
        ]

    def _change(self, uid: UUID, segment_id: str, inside: bool, at: str | None) -> Append:
        # The stream id, not the customer id: the log outlives an erasure, and the relay
        # looks the id up when it publishes (and finds none once the customer is erased).
        fields = [("segment", segment_id), ("stream", key_text(uid)), ("member", str(int(inside)))]
        fields.append(("at", at) if at else ("erased", "1"))
        return Append(self.keys.changes, tuple(fields), CHANGES_KEPT)

    def _segment_event(self, event: Any, position: int) -> list[Op]:
        definitions = self.definitions()
        segment_id = getattr(event, "segment_id", None) or _segment_id_of(definitions, event)
        before = definitions.get(segment_id)
        if isinstance(event, Segment.Retired):
            if before is None:
                return []
            retired = replace(before, retired=True, version=event.originator_version)
            definitions[segment_id] = retired
            self._changed()
            ops: list[Op] = [Drop(self.keys.members(segment_id))]
        else:
            definitions[segment_id] = Definition(
                segment_id=segment_id,
                name=event.name,
                description=event.description,
                rule_json=event.rule,
                version=event.originator_version,
                position=position,
            )
            self._changed()
            ops = []
        _scopes, serving = self.live()
        return [
            *ops,
            Put(self.keys.definitions, segment_id, definitions[segment_id].to_json()),
            Store(self.keys.in_service, orjson.dumps(sorted(serving)).decode()),
        ]

    def _apply(self, profile: ProfileFacts, event: Any, now: datetime) -> set[str]:
        """Applies the event to the facts; returns the scopes of the segments it may move."""
        if forgotten(event):
            return set()  # its customer was erased, and is dropped at the erasure event
        if isinstance(event, Customer.Registered):
            profile.customer_id = event.customer_id
            return set()
        if isinstance(event, Customer.InteractionRecorded):
            changed = profile.add_interaction(
                event.type, event.properties, event.occurred_at, self.index(), now
            )
            profile.score = profile.score.add(self.model, event.type, event.occurred_at, now)
            return changed  # what the score moved is decided once per page: `_score_moved`
        if isinstance(event, Customer.TraitsUpdated):
            for name, value in event.traits.items():
                if value is None:
                    profile.traits.pop(name, None)
                else:
                    profile.traits[name] = value
            return self._reading("trait")
        if isinstance(event, Customer.ConsentChanged):
            at = format_utc(event.occurred_at)
            current = profile.consents.get(event.purpose)
            if current is None or at >= current[1]:
                profile.consents[event.purpose] = (event.granted, at)
            return self._reading("consent")
        return set()

    def _reading(self, kind: str) -> set[str]:
        if kind not in self._readers:
            self._readers[kind] = {d.scope for d in self.active() if kind in d.reads}
        return self._readers[kind]

    # ------------------------------------------------------------------ membership

    def load(self, uids: set[UUID] | list[UUID]) -> dict[UUID, ProfileFacts]:
        ordered = list(uids)
        raws = self._redis.mget([self.keys.facts(u) for u in ordered]) if ordered else []
        return {u: ProfileFacts.from_json(r) for u, r in zip(ordered, raws, strict=True)}

    def settle(
        self,
        uid: UUID,
        profile: ProfileFacts,
        judge: Evaluator,
        affected: set[str] | None = None,
        listed: float | None = None,
    ) -> list[Op]:
        """Re-evaluates the profile's segments that may have moved (`affected`, those whose
        instant has come and those never evaluated; all when None) and writes its facts,
        membership and next due instant. The others keep their answer and their instant.

        `listed` is the instant the due set holds for the profile when the caller read it
        there (a tick); otherwise the due set is taken to hold what the facts say. An entry
        that has come is always rewritten: it must leave the past, or it is due forever."""
        scopes, segment_ids = self.live()
        stamp = judge.now.timestamp()
        scheduled = _earliest(profile.due) if listed is None else listed
        # Retired and replaced versions go first: their instants are nobody's due any more.
        profile.forget_scopes_except(scopes)
        due = profile.due
        # A scope never evaluated has no entry (-inf: now); None is "not without an event".
        recheck = [
            d
            for d in self.active()
            if affected is None
            or d.scope in affected
            or ((when := due.get(d.scope, -inf)) is not None and when <= stamp)
        ]
        rechecked = {d.segment_id for d in recheck}
        joined = {s for s in profile.segments if s in segment_ids and s not in rechecked}
        consents = profile.granted()
        for definition in recheck:
            inside, due[definition.scope] = judge.answer(definition, profile, consents)
            if inside:
                joined.add(definition.segment_id)
        ops: list[Op] = []
        for segment_id in sorted(joined.symmetric_difference(profile.segments)):
            inside = segment_id in joined
            ops.append(Member(self.keys.of(uid), segment_id, inside))
            ops.append(Member(self.keys.members(segment_id), profile.customer_id, inside, 0.0))
            if self.publishing:
                ops.append(self._change(uid, segment_id, inside, format_utc(judge.now)))
        profile.segments = sorted(joined)
        ops.append(Store(self.keys.facts(uid), profile.to_json()))
        earliest = _earliest(due)
        if earliest != scheduled or (scheduled is not None and scheduled <= stamp):
            ops.append(
                Member(self.keys.due, key_text(uid), False, 0.0)
                if earliest is None
                else Member(self.keys.due, key_text(uid), True, earliest)
            )
        return ops

    # ------------------------------------------------------------------ time and back-fill

    def maintain(self, apply: ApplyOps, pages: PageReader) -> bool:
        self._reload()
        position = int(self._redis.hget(self.tracking_key, "position") or 0)
        ops = self.tick(self.clock())
        if ops:
            apply(self.tracking_key, position, position, ops)
        # A back-fill step every time, however much time-driven work there is: a tick that
        # always finds work must not keep a new segment filling.
        filled = self._backfill_step(apply, pages)
        return bool(ops) or filled

    def tick(self, now: datetime) -> list[Op]:
        """Membership that time changed: re-evaluates the profiles whose instant has come."""
        due = self._redis.zrangebyscore(
            self.keys.due, "-inf", now.timestamp(), 0, DUE_BATCH, withscores=True
        )
        if not due:
            return []
        listed = {UUID(u): when for u, when in due}
        facts = self.load(list(listed))
        # Nothing happened to these profiles but time: only their due segments are rechecked.
        judge = Evaluator(self.model, now)
        return [
            op
            for uid, when in listed.items()
            for op in self.settle(uid, facts[uid], judge, set(), listed=when)
        ]


SEGMENT_EVENTS = (Segment.Defined, Segment.Redefined, Segment.Retired)


def _segment_id_of(definitions: dict[str, Definition], event: Any) -> str:
    from domain.segment import segment_uuid

    for segment_id in definitions:
        if segment_uuid(segment_id) == event.originator_id:
            return segment_id
    raise LookupError(f"no definition for segment stream {event.originator_id}")


def _earliest(due: dict[str, float | None]) -> float | None:
    return min((v for v in due.values() if v is not None), default=None)
