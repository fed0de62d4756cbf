"""Back-fill: a new or changed segment rule applied to every existing profile, from history.

A mixin of SegmentsReadModel, which supplies the state it reads (keys, definitions, facts) and
`settle`; kept apart because it is a whole procedure of its own, run between live pages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from domain.customer import Customer
from domain.privacy import forgotten
from domain.score import ScoreModel
from projections.ops import Op, Put, Store
from projections.runner import ApplyOps, PageReader
from projections.segment_eval import Evaluator
from projections.segment_keys import SegmentKeys
from projections.segment_state import Definition, EventIndex, ProfileFacts

CUSTOMER_EVENTS = (
    Customer.Registered,
    Customer.ProfileErased,
    Customer.InteractionRecorded,
    Customer.TraitsUpdated,
    Customer.ConsentChanged,
)


class Backfill:
    keys: SegmentKeys
    model: ScoreModel
    clock: Callable[[], datetime]
    _redis: Any

    @property
    def tracking_key(self) -> str:
        raise NotImplementedError

    def active(self) -> list[Definition]:
        raise NotImplementedError

    def definitions(self) -> dict[str, Definition]:
        raise NotImplementedError

    def _changed(self) -> None:
        raise NotImplementedError

    def load(self, uids: set[UUID] | list[UUID]) -> dict[UUID, ProfileFacts]:
        raise NotImplementedError

    def settle(
        self,
        uid: UUID,
        profile: ProfileFacts,
        judge: Evaluator,
        affected: set[str] | None = None,
        listed: float | None = None,
    ) -> list[Op]:
        raise NotImplementedError

    def _reload(self) -> None:
        raise NotImplementedError

    def _segment_event(self, event: Any, position: int) -> list[Op]:
        raise NotImplementedError

    def define_all(self, events: Sequence[tuple[int, object]]) -> list[Op]:
        """A rebuild's definitions as they stand where its stream pass ends, live at once:
        every profile is then built from its whole history under them, so nothing is left
        to back-fill (as when segments are defined before any profile)."""
        self._reload()
        ops = [op for position, event in events for op in self._segment_event(event, position)]
        for segment_id, definition in self.definitions().items():
            if definition.retired:
                continue  # never back-filled, in store order either
            live = replace(definition, state="live")
            self.definitions()[segment_id] = live
            ops.append(Put(self.keys.definitions, segment_id, live.to_json()))
        self._changed()
        return ops

    def _backfill_step(self, apply: ApplyOps, pages: PageReader) -> bool:
        """Replays history into the facts of every segment still filling, in one pass for all
        of them, then evaluates every profile once; then those segments are live.

        The segments of one pass are fixed when it starts (a generation): one defined during
        the pass waits for the next, since the replay has already passed its early events.
        """
        track = self.keys.backfill_state
        state = self._redis.hgetall(track)
        cursor, generation = int(state.get("position", 0)), orjson.loads(state.get("scopes", "[]"))
        filling = [d for d in self.active() if d.state == "filling"]
        group = [d for d in filling if d.scope in generation]
        if not group:
            if not filling:
                return False
            scopes = orjson.dumps([d.scope for d in filling]).decode()
            restart: list[Op] = [
                Put(track, "position", "0"),
                Put(track, "scopes", scopes),
                Put(track, "profiles", "0"),
            ]
            return apply(track, cursor, cursor, restart)
        target = max(d.position for d in group)
        if cursor < target:
            page = pages(cursor, target)
            if not page:
                return False
            # Not an erased customer's: its facts were dropped at the erasure and must stay so.
            facts = self.load(
                {
                    e.originator_id
                    for _, e in page
                    if isinstance(e, Customer.InteractionRecorded) and not forgotten(e)
                }
            )
            # Whether any profile existed before the group's definitions: see below.
            existed = any(isinstance(e, CUSTOMER_EVENTS) for _, e in page)
            now = self.clock()
            indexes: dict[tuple[str, ...], EventIndex] = {}
            for n, e in page:
                if isinstance(e, Customer.InteractionRecorded) and not forgotten(e):
                    wanting = [d for d in group if n <= d.position]
                    wanted = tuple(d.scope for d in wanting)
                    if wanted not in indexes:
                        indexes[wanted] = EventIndex.of(wanting)
                    facts[e.originator_id].add_interaction(
                        e.type, e.properties, e.occurred_at, indexes[wanted], now
                    )
            ops: list[Op] = [Store(self.keys.facts(u), f.to_json()) for u, f in facts.items()]
            if existed:
                ops.append(Put(track, "profiles", "1"))
            return apply(track, cursor, page[-1][0], ops)
        # Every profile, evaluated once with complete histories: then the group is live.
        # Unless no profile had an event before the definitions (a rebuild from 0 of segments
        # defined first): each profile then met them on its first event, was evaluated with
        # them from its whole history, and left a due instant for what time changes, as a live
        # projector would have it; evaluating all of them again changes nothing. A state
        # written before this flag existed ("profiles" absent) is evaluated, to be safe.
        position = int(self._redis.hget(self.tracking_key, "position") or 0)
        judge = Evaluator(self.model, self.clock())
        existing = state.get("profiles", "1") != "0"
        scanned = self._redis.scan_iter(match=self.keys.facts("*"), count=500) if existing else ()
        for keys in _chunks(scanned, 500):
            uids = [UUID(k.rsplit("{", 1)[1].rstrip("}")) for k in keys]
            facts = self.load(uids)
            ops = [op for u in uids for op in self.settle(u, facts[u], judge)]
            apply(self.tracking_key, position, position, ops)
        done: list[Op] = [Put(track, "position", "0"), Put(track, "scopes", "[]")]
        for definition in group:
            live = replace(definition, state="live")
            self.definitions()[definition.segment_id] = live
            self._changed()
            done.append(Put(self.keys.definitions, definition.segment_id, live.to_json()))
        return apply(track, cursor, cursor, done)


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
