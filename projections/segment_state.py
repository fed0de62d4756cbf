"""Segment definitions and one profile's rule facts as the segment read model stores them.

Facts for event conditions are scoped to a segment version ("id@version/condition key"), so a
new or changed rule starts its own history: live events after its definition and the
back-fill of events before it fill disjoint halves, and nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from typing import Any

import orjson

from domain.facts import Facts, KeyTimes, event_conditions, keep_per_key, matches
from domain.rules import (
    ConsentCondition,
    EventCondition,
    Rule,
    ScoreCondition,
    TraitCondition,
    leaves,
    parse_rule,
)
from domain.score import ScoreState


@dataclass(frozen=True)
class Definition:
    segment_id: str
    name: str
    description: str | None
    rule_json: Any
    version: int
    position: int  # where it was defined: the back-fill replays up to here
    state: str = "filling"  # filling until every existing profile is evaluated; then live
    retired: bool = False

    # Derived once per definition: they are read per profile per page.
    @cached_property
    def rule(self) -> Rule:
        return parse_rule(self.rule_json)

    @cached_property
    def scope(self) -> str:
        return f"{self.segment_id}@{self.version}/"

    @cached_property
    def conditions(self) -> tuple[EventCondition, ...]:
        return tuple(event_conditions(self.rule))

    @cached_property
    def keep(self) -> dict[str, int]:
        return keep_per_key([self.rule])

    @cached_property
    def reads(self) -> frozenset[str]:
        """Which non-event facts the rule reads: score, trait, consent."""
        return frozenset(_READS[type(leaf)] for leaf in leaves(self.rule) if type(leaf) in _READS)

    def to_json(self) -> str:
        return orjson.dumps({f.name: getattr(self, f.name) for f in fields(self)}).decode()

    @classmethod
    def from_json(cls, raw: str) -> Definition:
        return _definition(raw)


_READS = {ScoreCondition: "score", TraitCondition: "trait", ConsentCondition: "consent"}


@lru_cache(maxsize=10_000)
def _definition(raw: str) -> Definition:
    return Definition(**orjson.loads(raw))


@lru_cache(maxsize=10_000)
def is_live(raw: str) -> bool:
    """Whether a stored definition is in service; cached, as every profile read asks."""
    return not Definition.from_json(raw).retired


@dataclass
class ProfileFacts:
    """Everything segment rules read about one profile, as one JSON blob in Redis."""

    customer_id: str = ""
    traits: dict[str, Any] = field(default_factory=dict)
    consents: dict[str, tuple[bool, str]] = field(default_factory=dict)  # purpose: (granted, at)
    score: ScoreState = field(default_factory=ScoreState)
    # segment scope ("id@version/") -> condition key -> times: one lookup per segment evaluated
    times: dict[str, dict[str, KeyTimes]] = field(default_factory=dict)
    segments: list[str] = field(default_factory=list)  # current membership
    # scope -> epoch of its next possible change (None: none without an event); a scope
    # present here has been evaluated for this profile
    due: dict[str, float | None] = field(default_factory=dict)

    def add_interaction(
        self,
        kind: str,
        properties: Mapping[str, Any],
        at: datetime,
        definitions: list[Definition],
        now: datetime,
    ) -> set[str]:
        """Records the interaction; returns the scopes whose event facts it changed."""
        changed: set[str] = set()
        for definition in definitions:
            keep = definition.keep
            mine = self.times.setdefault(definition.scope, {})
            seen: set[str] = set()
            for condition in definition.conditions:
                key = condition.key
                if key in seen or not matches(condition, kind, properties):
                    continue
                seen.add(key)
                mine[key] = mine.get(key, KeyTimes()).add(at, keep[key], now)
                changed.add(definition.scope)
        return changed

    def facts_for(self, definitions: Sequence[Definition]) -> list[Facts]:
        """One view per segment; what they share is made once."""
        consents = {p: granted for p, (granted, _) in self.consents.items()}
        return [
            Facts(self.times.get(d.scope, {}), self.traits, consents, self.score)
            for d in definitions
        ]

    def forget_scopes_except(self, live: set[str]) -> None:
        """Drops the histories of retired or replaced segment versions."""
        self.times = {scope: v for scope, v in self.times.items() if scope in live}
        self.due = {scope: v for scope, v in self.due.items() if scope in live}

    def to_json(self) -> str:
        return orjson.dumps(
            {
                "cid": self.customer_id,
                "t": self.traits,
                "c": self.consents,
                "s": [
                    self.score.value,
                    _stamp(self.score.reference),
                    [[_stamp(a), w] for a, w in self.score.pending],
                ],
                "k": {
                    scope: {k: [[_stamp(x) for x in v.recent], v.total] for k, v in keys.items()}
                    for scope, keys in self.times.items()
                },
                "m": self.segments,
                "d": self.due,
            }
        ).decode()

    @classmethod
    def from_json(cls, raw: str | None) -> ProfileFacts:
        if not raw:
            return cls()
        d = orjson.loads(raw)
        value, reference, pending = d["s"]
        return cls(
            customer_id=d["cid"],
            traits=d["t"],
            consents={p: (g, at) for p, (g, at) in d["c"].items()},
            score=ScoreState(value, _time(reference), tuple((_when(a), w) for a, w in pending)),
            times={
                scope: {
                    k: KeyTimes(tuple(_when(x) for x in recent), total)
                    for k, (recent, total) in keys.items()
                }
                for scope, keys in d["k"].items()
            },
            segments=d["m"],
            due=d.get("d", {}),
        )


def _stamp(at: datetime | None) -> float | None:
    return None if at is None else at.timestamp()


def _time(stamp: float | None) -> datetime | None:
    return None if stamp is None else datetime.fromtimestamp(stamp, UTC)


def _when(stamp: float) -> datetime:
    return datetime.fromtimestamp(stamp, UTC)
