"""The engagement score kept in one number equals the contract's formula, whatever the order."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.score import ScoreModel, ScoreState

START = datetime(2026, 1, 1, tzinfo=UTC)
MODEL = ScoreModel()
KINDS = ["page_view", "product_view", "purchase", "email_click", "newsletter_signup"]

arrivals = st.lists(
    st.tuples(
        st.sampled_from(KINDS),
        st.integers(0, 90 * 24 * 3600),  # when it happened, seconds after START
        st.integers(-300, 60 * 24 * 3600),  # how late it arrived (up to 5 min early)
    ),
    max_size=40,
)


@settings(max_examples=300)
@given(arrivals, st.integers(0, 200 * 24 * 3600))
def test_state_equals_the_formula_for_any_arrival_order(
    events: list[tuple[str, int, int]], later: int
) -> None:
    # Arrival order: by arrival time, which is not the order in which they happened.
    timed = sorted(
        (
            (START + timedelta(seconds=o + d), kind, START + timedelta(seconds=o))
            for kind, o, d in events
        ),
        key=lambda e: e[0],
    )
    state, clock = ScoreState(), START
    for arrived, kind, occurred in timed:
        clock = max(clock, arrived)
        state = state.add(MODEL, kind, occurred, clock)
    t = clock + timedelta(seconds=later)
    expected = MODEL.score_at([(k, o) for _, k, o in timed], t)
    assert math.isclose(state.at(MODEL, t), expected, rel_tol=1e-9, abs_tol=1e-300)


def test_score_halves_every_half_life_without_writes() -> None:
    state = ScoreState().add(MODEL, "purchase", START, START)
    assert state.at(MODEL, START) == 10
    assert math.isclose(state.at(MODEL, START + timedelta(days=7)), 5)
    assert math.isclose(state.at(MODEL, START + timedelta(days=14)), 2.5)


def test_an_event_ahead_of_the_clock_counts_only_from_when_it_happened() -> None:
    ahead = START + timedelta(minutes=3)
    state = ScoreState().add(MODEL, "purchase", ahead, START)
    assert state.at(MODEL, START + timedelta(minutes=2)) == 0
    assert state.at(MODEL, ahead) == 10
    assert state.next_pending(START) == ahead


def test_falls_below_names_the_instant_the_score_reaches_the_threshold() -> None:
    state = ScoreState().add(MODEL, "purchase", START, START)  # 10, halving weekly
    when = state.falls_below(MODEL, 2.5, START)
    assert when == START + timedelta(days=14)
    assert state.falls_below(MODEL, 20, START) is None  # already below


def test_weights_and_half_life_are_configurable() -> None:
    model = ScoreModel(half_life=timedelta(days=1), weights={"purchase": 100}, default_weight=0.5)
    state = ScoreState().add(model, "purchase", START, START).add(model, "other", START, START)
    assert math.isclose(state.at(model, START + timedelta(days=1)), 50.25)
