"""Engagement score: sum of weight(type) * 0.5 ** ((t - occurredAt) / halfLife) over interactions
that occurred at or before t. Order of arrival does not matter.

`ScoreState` keeps the whole sum in one number, valued at a reference instant, so the score
decays without writes and costs the same for a customer with one interaction or a million. An
event recorded ahead of the clock (allowed up to five minutes) waits in `pending` until its
time comes, since it must not count before it happened.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

DEFAULT_WEIGHTS: Mapping[str, float] = {
    "page_view": 1.0,
    "product_view": 2.0,
    "add_to_cart": 5.0,
    "checkout_started": 8.0,
    "purchase": 10.0,
    "email_open": 1.0,
    "email_click": 3.0,
}


@dataclass(frozen=True)
class ScoreModel:
    half_life: timedelta = timedelta(days=7)
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    default_weight: float = 1.0

    def weight(self, interaction_type: str) -> float:
        return self.weights.get(interaction_type, self.default_weight)

    def decay(self, elapsed: timedelta) -> float:
        return float(0.5 ** (elapsed / self.half_life))

    def score_at(self, interactions: Iterable[tuple[str, datetime]], t: datetime) -> float:
        """The contract's formula, summed from scratch: the reference the state must match."""
        return math.fsum(
            self.weight(kind) * self.decay(t - at) for kind, at in interactions if at <= t
        )


@dataclass(frozen=True)
class ScoreState:
    value: float = 0.0  # the score at `reference` of the events folded in
    reference: datetime | None = None
    pending: tuple[tuple[datetime, float], ...] = ()  # (occurredAt, weight) not yet due

    def add(self, model: ScoreModel, kind: str, occurred_at: datetime, now: datetime) -> ScoreState:
        weight = model.weight(kind)
        if occurred_at > now:
            pending = tuple(sorted((*self.pending, (occurred_at, weight))))
            return ScoreState(self.value, self.reference, pending)
        settled = self.settle(model, now)
        return settled._fold(model, occurred_at, weight)

    def settle(self, model: ScoreModel, now: datetime) -> ScoreState:
        """Folds in the pending events whose time has come."""
        if not self.pending:  # the usual case, asked per segment evaluated: no copy
            return self
        state = ScoreState(self.value, self.reference)
        for at, weight in self.pending:
            if at <= now:
                state = state._fold(model, at, weight)
        later = tuple(p for p in self.pending if p[0] > now)
        return ScoreState(state.value, state.reference, later)

    def _fold(self, model: ScoreModel, at: datetime, weight: float) -> ScoreState:
        if self.reference is None:
            return ScoreState(weight, at, self.pending)
        if at <= self.reference:  # late or out of order: decayed to the reference
            value = self.value + weight * model.decay(self.reference - at)
            return ScoreState(value, self.reference, self.pending)
        moved = self.value * model.decay(at - self.reference) + weight
        return ScoreState(moved, at, self.pending)

    def at(self, model: ScoreModel, t: datetime) -> float:
        """The score at t (t at or after the reference: the service clock moves forward)."""
        settled = self.settle(model, t)
        if settled.reference is None:
            return 0.0
        return settled.value * model.decay(t - settled.reference)

    def falls_below(self, model: ScoreModel, threshold: float, t: datetime) -> datetime | None:
        """When, after t and with no new event, the score drops to `threshold` or below.

        Pending events raise the score when their time comes, so the answer holds only until
        the next of them; callers re-evaluate then (see `next_pending`).
        """
        current = self.at(model, t)
        if threshold <= 0 or current <= threshold:
            return None
        settled = self.settle(model, t)
        assert settled.reference is not None
        # value * 0.5 ** ((x - ref) / h) = threshold  =>  x = ref + h * log2(value / threshold)
        return settled.reference + model.half_life * math.log2(settled.value / threshold)

    def next_pending(self, t: datetime) -> datetime | None:
        return min((at for at, _ in self.pending if at > t), default=None)
