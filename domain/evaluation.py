"""Evaluating a rule for a profile at an instant, and when its answer may next change by itself.

`next_change` is what lets membership follow the clock without scanning everyone: a window
that slides past its oldest counted event, a decaying score that crosses a threshold, an
event recorded ahead of the clock that becomes due. It may name an instant at which nothing
flips (re-evaluating then is harmless); it never misses one.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from domain.facts import Facts, KeyTimes
from domain.rules import (
    All,
    AnyOf,
    ConsentCondition,
    EventCondition,
    Not,
    Rule,
    ScoreCondition,
    TraitCondition,
)
from domain.score import ScoreModel

_NO_TIMES = KeyTimes()
TICK = timedelta(microseconds=1)  # "just after": where an inclusive bound stops holding
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def evaluate(rule: Rule, facts: Facts, model: ScoreModel, t: datetime) -> bool:
    if isinstance(rule, All):
        return all(evaluate(r, facts, model, t) for r in rule.rules)
    if isinstance(rule, AnyOf):
        return any(evaluate(r, facts, model, t) for r in rule.rules)
    if isinstance(rule, Not):
        return not evaluate(rule.rule, facts, model, t)
    if isinstance(rule, EventCondition):
        times = facts.events.get(rule.key, KeyTimes())
        since = None if rule.within is None else t - rule.within
        return times.count(since, t) >= rule.at_least
    if isinstance(rule, TraitCondition):
        return _trait(rule, facts.traits.get(rule.name))
    if isinstance(rule, ScoreCondition):
        return _COMPARE[rule.op](facts.score.at(model, t), rule.value)
    assert isinstance(rule, ConsentCondition)
    return facts.consents.get(rule.purpose.value, False)


def _trait(rule: TraitCondition, value: object) -> bool:
    if rule.op == "exists":
        return value is not None
    if rule.op == "eq":
        return bool(value == rule.value)
    if rule.op == "neq":
        return bool(value != rule.value)
    if rule.op == "in":
        return value in rule.value
    # Ordering compares like with like only: a number with a string is simply false.
    if isinstance(value, bool) or isinstance(rule.value, bool):
        return False
    numbers = isinstance(value, int | float) and isinstance(rule.value, int | float)
    texts = isinstance(value, str) and isinstance(rule.value, str)
    return (numbers or texts) and _COMPARE[rule.op](value, rule.value)


def evaluate_with_next_change(
    rule: Rule, facts: Facts, model: ScoreModel, t: datetime
) -> tuple[bool, datetime | None]:
    """`evaluate` and `next_change` in one walk of the rule: a projection asks both for every
    segment it re-evaluates."""
    candidates: list[datetime] = []
    value = _walk(rule, facts, model, t, candidates)
    return value, min((c for c in candidates if c > t), default=None)


def _walk(rule: Rule, facts: Facts, model: ScoreModel, t: datetime, out: list[datetime]) -> bool:
    """The rule's answer at t; appends the instants `_candidates` names to `out`."""
    if isinstance(rule, All | AnyOf):
        answers = [_walk(r, facts, model, t, out) for r in rule.rules]  # all: each has instants
        return all(answers) if isinstance(rule, All) else any(answers)
    if isinstance(rule, Not):
        return not _walk(rule.rule, facts, model, t, out)
    if isinstance(rule, EventCondition):
        times = facts.events.get(rule.key, _NO_TIMES)
        out += _event_candidates(rule, times, t)
        since = None if rule.within is None else t - rule.within
        return times.count(since, t) >= rule.at_least
    if isinstance(rule, ScoreCondition):
        out += _score_candidates(rule, facts, model, t)
        return _COMPARE[rule.op](facts.score.at(model, t), rule.value)
    return evaluate(rule, facts, model, t)  # traits and consents: no instants


def next_change(rule: Rule, facts: Facts, model: ScoreModel, t: datetime) -> datetime | None:
    """The earliest instant after t at which `evaluate` may answer differently, if any."""
    candidates = [c for c in _candidates(rule, facts, model, t) if c > t]
    return min(candidates, default=None)


def _candidates(rule: Rule, facts: Facts, model: ScoreModel, t: datetime) -> list[datetime]:
    if isinstance(rule, All | AnyOf):
        return [c for r in rule.rules for c in _candidates(r, facts, model, t)]
    if isinstance(rule, Not):
        return _candidates(rule.rule, facts, model, t)
    if isinstance(rule, EventCondition):
        return _event_candidates(rule, facts.events.get(rule.key, KeyTimes()), t)
    if isinstance(rule, ScoreCondition):
        return _score_candidates(rule, facts, model, t)
    return []  # traits and consents change only with events


def _event_candidates(rule: EventCondition, times: KeyTimes, t: datetime) -> list[datetime]:
    due = [x for x in times.recent if x > t]  # recorded ahead of the clock: counts once due
    if rule.within is None:
        return due[:1]
    counted = [x for x in times.recent if t - rule.within < x <= t]
    if len(counted) >= rule.at_least:
        # Holds until the at_least-th newest counted event leaves the window.
        return [counted[-rule.at_least] + rule.within, *due[:1]]
    return due[:1]


def _score_candidates(
    rule: ScoreCondition, facts: Facts, model: ScoreModel, t: datetime
) -> list[datetime]:
    candidates = [] if (p := facts.score.next_pending(t)) is None else [p]
    crossing = facts.score.falls_below(model, rule.value, t)
    if crossing is not None:
        # Just after the crossing every op has flipped, whatever the rounding at the instant.
        candidates.append(crossing + TICK)
    return candidates
