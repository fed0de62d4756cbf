"""A profile's segment answers at one instant, computed once for what profiles share.

A rule answers from the profile's event times for its scope, the traits and consents it
names, and the score. Most profiles have no event times yet for most scopes (every new
profile for all of them), and a profile with no interactions has no score: for such a scope
the answer and its next instant depend only on the traits and consents the rule names, so
they are computed once per instant for each combination of those values.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from datetime import datetime

from domain.evaluation import evaluate_with_next_change
from domain.facts import Facts
from domain.score import ScoreModel, ScoreState
from projections.segment_state import Definition, ProfileFacts

Answer = tuple[bool, float | None]  # member, epoch of the next possible change


class Evaluator:
    def __init__(self, model: ScoreModel, now: datetime) -> None:
        self.model = model
        self.now = now
        self._shared: dict[Hashable, Answer] = {}

    def answer(
        self, definition: Definition, profile: ProfileFacts, consents: Mapping[str, bool]
    ) -> Answer:
        times = profile.times_of(definition.scope)
        key = None if times else _shared_key(definition, profile, consents)
        if key is not None and key in self._shared:
            return self._shared[key]
        facts = Facts(times, profile.traits, consents, profile.score)
        inside, when = evaluate_with_next_change(definition.rule, facts, self.model, self.now)
        answer = (inside, None if when is None else when.timestamp())
        if key is not None:
            self._shared[key] = answer
        return answer


def _shared_key(
    definition: Definition, profile: ProfileFacts, consents: Mapping[str, bool]
) -> Hashable | None:
    """What the answer depends on when the scope has no event times; None when that includes
    a score, or a trait value that cannot be a key (a list or an object)."""
    score = profile.score
    if "score" in definition.reads and (score.reference is not None or score.pending):
        return None
    traits = tuple(profile.traits.get(name) for name in definition.trait_names)
    granted = tuple(consents.get(purpose, False) for purpose in definition.purposes)
    key = (definition.scope, traits, granted)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def score_moved(
    definitions: Sequence[Definition],
    model: ScoreModel,
    before: ScoreState,
    after: ScoreState,
    now: datetime,
) -> set[str]:
    """The scopes of score-reading segments whose answer or next instant a page's interactions
    may have moved. The stored answer holds at `now` for the old score (or the segment is due
    anyway). A rise flips no score condition unless a threshold lies between the two values,
    and leaves the stored instant no later than the new one (early is harmless). A fall, or an
    interaction recorded ahead of the clock, rechecks them all."""
    if after is before:
        return set()
    low, high = before.at(model, now), after.at(model, now)
    every = bool(before.pending or after.pending) or high < low
    return {
        d.scope
        for d in definitions
        if d.thresholds and (every or any(low <= v <= high for v in d.thresholds))
    }
