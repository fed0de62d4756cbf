"""What a profile must remember for segment rules, and no more.

For each event condition key (type + where) the state keeps the times of the most recent
`at_least` interactions that have happened (the largest `at_least` among the rules using the
key) plus any recorded ahead of the clock, and an all-time count. That is enough to decide
"at least N within W" exactly at any later instant, so memory stays flat for a customer with
a hundred thousand interactions.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from domain.rules import EventCondition, Rule, leaves
from domain.score import ScoreModel, ScoreState


def event_conditions(rule: Rule) -> Iterable[EventCondition]:
    return (leaf for leaf in leaves(rule) if isinstance(leaf, EventCondition))


def keep_per_key(rules: Iterable[Rule]) -> dict[str, int]:
    """How many recent times each condition key needs: the largest atLeast using it."""
    keep: dict[str, int] = {}
    for rule in rules:
        for condition in event_conditions(rule):
            keep[condition.key] = max(keep.get(condition.key, 0), condition.at_least)
    return keep


def matches(condition: EventCondition, kind: str, properties: Mapping[str, Any]) -> bool:
    if condition.type is not None and condition.type != kind:
        return False
    return where_holds(condition, properties, {})


def where_holds(
    condition: EventCondition, properties: Mapping[str, Any], canonical: dict[str, str]
) -> bool:
    """Whether the properties have the condition's `where` values. `canonical` caches each
    property's canonical JSON, so an interaction tried on many conditions encodes it once."""
    for name, value in condition.where:
        if name not in properties:
            return False
        text = canonical.get(name)
        if text is None:
            text = canonical[name] = json.dumps(properties[name], sort_keys=True)
        if text != value:
            return False
    return True


@dataclass(frozen=True)
class KeyTimes:
    recent: tuple[datetime, ...] = ()  # sorted, oldest first
    total: int = 0  # every matching interaction ever recorded

    def add(self, at: datetime, keep: int, now: datetime) -> KeyTimes:
        times = list(self.recent)
        bisect.insort(times, at)
        if times[-1] <= now:  # the usual case, nothing ahead of the clock: keep the newest
            return KeyTimes(tuple(times[-keep:]), self.total + 1)
        past = [x for x in times if x <= now]
        future = [x for x in times if x > now]
        return KeyTimes(tuple(past[-keep:] + future), self.total + 1)

    def count(self, since: datetime | None, until: datetime) -> int:
        """Interactions with occurredAt in (since, until]; all time when `since` is None."""
        if since is None:
            return self.total - sum(1 for x in self.recent if x > until)
        return sum(1 for x in self.recent if since < x <= until)


@dataclass(frozen=True)
class Facts:
    events: Mapping[str, KeyTimes] = field(default_factory=dict)
    traits: Mapping[str, Any] = field(default_factory=dict)
    consents: Mapping[str, bool] = field(default_factory=dict)
    score: ScoreState = field(default_factory=ScoreState)

    def with_interaction(
        self,
        kind: str,
        properties: Mapping[str, Any],
        occurred_at: datetime,
        *,
        conditions: Iterable[EventCondition],
        keep: Mapping[str, int],
        model: ScoreModel,
        now: datetime,
    ) -> Facts:
        events = dict(self.events)
        seen: set[str] = set()
        for condition in conditions:
            # Several rules may share a key; the interaction counts once for it.
            if condition.key in seen or not matches(condition, kind, properties):
                continue
            seen.add(condition.key)
            times = events.get(condition.key, KeyTimes())
            events[condition.key] = times.add(occurred_at, keep[condition.key], now)
        score = self.score.add(model, kind, occurred_at, now)
        return replace(self, events=events, score=score)
