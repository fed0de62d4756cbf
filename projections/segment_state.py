"""Segment definitions and one profile's rule facts as the segment read model stores them.

Facts for event conditions are scoped to a segment version ("id@version/condition key"), so a
new or changed rule starts its own history: live events after its definition and the
back-fill of events before it fill disjoint halves, and nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from types import MappingProxyType
from typing import Any

import orjson

from domain.facts import KeyTimes, event_conditions, keep_per_key, where_holds
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
    def thresholds(self) -> tuple[float, ...]:
        """The values its score conditions compare with."""
        return tuple(leaf.value for leaf in leaves(self.rule) if isinstance(leaf, ScoreCondition))

    @cached_property
    def trait_names(self) -> tuple[str, ...]:
        return tuple(sorted({x.name for x in leaves(self.rule) if isinstance(x, TraitCondition)}))

    @cached_property
    def purposes(self) -> tuple[str, ...]:
        """The consent purposes it reads, as `Facts.consents` names them."""
        return tuple(
            sorted({x.purpose.value for x in leaves(self.rule) if isinstance(x, ConsentCondition)})
        )

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


Targets = tuple[tuple[str, int], ...]  # (segment scope, how many recent times it keeps)


@dataclass(frozen=True)
class EventIndex:
    """The distinct event conditions of some definitions, by interaction type, each with the
    scopes that count it: an interaction is matched once per condition, not once per segment."""

    by_type: Mapping[str | None, tuple[tuple[EventCondition, Targets], ...]]

    @classmethod
    def of(cls, definitions: Iterable[Definition]) -> EventIndex:
        targets: dict[str, tuple[EventCondition, dict[str, int]]] = {}
        for definition in definitions:
            for condition in definition.conditions:
                _, scopes = targets.setdefault(condition.key, (condition, {}))
                scopes[definition.scope] = definition.keep[condition.key]
        by_type: dict[str | None, list[tuple[EventCondition, Targets]]] = {}
        for condition, scopes in targets.values():
            by_type.setdefault(condition.type, []).append((condition, tuple(scopes.items())))
        return cls({kind: tuple(group) for kind, group in by_type.items()})

    def matching(self, kind: str, properties: Mapping[str, Any]) -> list[tuple[str, Targets]]:
        """(condition key, scopes) of the conditions the interaction matches."""
        canonical: dict[str, str] = {}
        return [
            (condition.key, scopes)
            for group in (self.by_type.get(kind, ()), self.by_type.get(None, ()))
            for condition, scopes in group
            if where_holds(condition, properties, canonical)
        ]


@dataclass
class ProfileFacts:
    """Everything segment rules read about one profile, as one JSON blob in Redis."""

    customer_id: str = ""
    traits: dict[str, Any] = field(default_factory=dict)
    consents: dict[str, tuple[bool, str]] = field(default_factory=dict)  # purpose: (granted, at)
    score: ScoreState = field(default_factory=ScoreState)
    # segment scope ("id@version/") -> condition key -> times: one lookup per segment evaluated.
    # Decoded per scope when first read: a page reads or changes few of a profile's scopes,
    # and the others go back as they were stored (`stored`: key -> [epochs, total]).
    times: dict[str, dict[str, KeyTimes]] = field(default_factory=dict)
    stored: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    segments: list[str] = field(default_factory=list)  # current membership
    # scope -> epoch of its next possible change (None: none without an event); a scope
    # present here has been evaluated for this profile
    due: dict[str, float | None] = field(default_factory=dict)

    def times_of(self, scope: str) -> Mapping[str, KeyTimes]:
        """A scope's times to read (no times: nothing to decode, nothing to write back)."""
        if scope in self.times or scope in self.stored:
            return self._own(scope)
        return _NO_TIMES

    def _own(self, scope: str) -> dict[str, KeyTimes]:
        mine = self.times.get(scope)
        if mine is None:
            raw = self.stored.pop(scope, {})
            mine = self.times[scope] = {
                k: KeyTimes(tuple(_when(x) for x in recent), total)
                for k, (recent, total) in raw.items()
            }
        return mine

    def add_interaction(
        self,
        kind: str,
        properties: Mapping[str, Any],
        at: datetime,
        index: EventIndex,
        now: datetime,
    ) -> set[str]:
        """Records the interaction; returns the scopes whose event facts it changed."""
        changed: set[str] = set()
        for key, targets in index.matching(kind, properties):
            for scope, keep in targets:
                mine = self._own(scope)
                mine[key] = mine.get(key, _NONE).add(at, keep, now)
                changed.add(scope)
        return changed

    def granted(self) -> dict[str, bool]:
        """Consents as rules read them: purpose -> granted."""
        return {p: granted for p, (granted, _) in self.consents.items()}

    def forget_scopes_except(self, live: frozenset[str]) -> None:
        """Drops the histories of retired or replaced segment versions."""
        if self.due.keys() <= live and self.times.keys() <= live and self.stored.keys() <= live:
            return
        self.times = {scope: v for scope, v in self.times.items() if scope in live}
        self.stored = {scope: v for scope, v in self.stored.items() if scope in live}
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
                    **self.stored,
                    **{
                        scope: {
                            k: [[x.timestamp() for x in v.recent], v.total] for k, v in keys.items()
                        }
                        for scope, keys in self.times.items()
                    },
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
            stored=d["k"],
            segments=d["m"],
            due=d.get("d", {}),
        )


_NONE = KeyTimes()
_NO_TIMES: Mapping[str, KeyTimes] = MappingProxyType({})


def _stamp(at: datetime | None) -> float | None:
    return None if at is None else at.timestamp()


def _time(stamp: float | None) -> datetime | None:
    return None if stamp is None else datetime.fromtimestamp(stamp, UTC)


def _when(stamp: float) -> datetime:
    return datetime.fromtimestamp(stamp, UTC)
