"""The engagement-score read model: one decaying sum per profile, valued at query time.

The projector folds each interaction into (v, ref): the score at instant ref. The query side
decays it to the present, so the score falls without writes. An interaction stamped ahead of
the clock waits in a small sorted set until it is due; until then it does not count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from uuid import UUID

from domain.customer import Customer
from domain.privacy import forgotten
from domain.score import ScoreModel
from projections.ops import Drop, Fold, Keep, Op
from projections.versions import FIRST, KEY_CACHE, glob

NAME = "score"
SCHEMA = 1  # the stored shape this code writes (see profile.SCHEMA)
PENDING_KEPT = 10_000


@lru_cache(maxsize=KEY_CACHE)
def _key(namespace: str, version: int, uid: UUID) -> str:
    return f"{namespace}score:v{version}:{{{uid}}}"


@dataclass(frozen=True)
class ScoreKeys:
    namespace: str = ""
    version: int = FIRST

    def score(self, uid: UUID) -> str:
        return _key(self.namespace, self.version, uid)

    def pending(self, uid: UUID) -> str:
        return self.score(uid) + ":pending"

    @property
    def tracking(self) -> str:
        return f"{self.namespace}projection:{NAME}:v{self.version}"

    @property
    def patterns(self) -> list[str]:
        return [glob(f"{self.namespace}score:v{self.version}:")]


@dataclass(frozen=True)
class ScoreReadModel:
    keys: ScoreKeys
    model: ScoreModel
    clock: Callable[[], datetime]  # decides only whether an interaction is due yet
    name: str = NAME
    schema: int = SCHEMA

    @property
    def version(self) -> int:
        return self.keys.version

    @property
    def tracking_key(self) -> str:
        return self.keys.tracking

    @property
    def key_patterns(self) -> list[str]:
        return self.keys.patterns

    def page_changes(self, events: Sequence[tuple[int, object]]) -> list[Op]:
        now = self.clock().timestamp()  # one instant per page, as a page is one step
        return [op for _, event in events for op in self.changes(event, now)]

    def changes(self, event: object, now: float) -> list[Op]:
        if isinstance(event, Customer.ProfileErased):
            uid = event.originator_id
            return [Drop(self.keys.score(uid)), Drop(self.keys.pending(uid))]
        if not isinstance(event, Customer.InteractionRecorded) or forgotten(event):
            return []
        uid = event.originator_id
        weight = self.model.weight(event.type)
        at = event.occurred_at.timestamp()
        if at > now:  # happened "later": counts from its own time, not before
            return [Keep(self.keys.pending(uid), at, f"{event.event_id}|{weight!r}", PENDING_KEPT)]
        half_life = self.model.half_life.total_seconds()
        return [Fold(self.keys.score(uid), weight, at, half_life, self.keys.pending(uid), now)]


def score_at(
    model: ScoreModel,
    value: str | None,
    ref: str | None,
    pending: Sequence[tuple[str, float]],
    t: datetime,
) -> float:
    """The contract's formula from the stored sum (v at instant ref, None when the profile
    has none yet) and the not-yet-folded entries."""
    half_life = model.half_life.total_seconds()
    now = t.timestamp()
    total = 0.0
    if value is not None and ref is not None:
        total = float(value) * 0.5 ** ((now - float(ref)) / half_life)
    for member, at in pending:
        if at <= now:
            weight = float(member.rsplit("|", 1)[1])
            total += weight * 0.5 ** ((now - at) / half_life)
    return total
