"""Rules evaluated on the bounded facts agree with the full history, and time moves them only
at the instants `next_change` names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.evaluation import evaluate, evaluate_with_next_change, next_change
from domain.facts import Facts, event_conditions, keep_per_key
from domain.rules import Rule, parse_rule
from domain.score import ScoreModel

START = datetime(2026, 3, 1, tzinfo=UTC)
MODEL = ScoreModel(half_life=timedelta(hours=1))
TYPES = ["product_view", "purchase"]

event_rule = st.builds(
    lambda kind, n, minutes: {"event": {"type": kind, "atLeast": n, "within": f"PT{minutes}M"}},
    st.sampled_from(TYPES),
    st.integers(1, 3),
    st.integers(1, 90),
)
all_time = st.builds(lambda n: {"event": {"type": "purchase", "atLeast": n}}, st.integers(1, 3))
score_rule = st.builds(
    lambda op, v: {"score": {"op": op, "value": v}},
    st.sampled_from(["gt", "gte", "lt", "lte"]),
    st.integers(0, 30),
)
leaf = st.one_of(event_rule, all_time, score_rule)
rules = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=5,
)
history = st.lists(
    st.tuples(st.sampled_from(TYPES), st.integers(0, 6 * 3600), st.integers(-240, 3 * 3600)),
    max_size=25,
)


def build(rule: Rule, events: list[tuple[str, int, int]], keep_all: bool) -> tuple[Facts, datetime]:
    conditions = list(event_conditions(rule))
    keep = keep_per_key([rule])
    if keep_all:
        keep = {k: 10_000 for k in keep}
    facts, clock = Facts(), START
    arrivals = sorted(
        (START + timedelta(seconds=o + max(d, -240)), kind, START + timedelta(seconds=o))
        for kind, o, d in events
    )
    for arrived, kind, occurred in arrivals:
        clock = max(clock, arrived)
        facts = facts.with_interaction(
            kind, {}, occurred, conditions=conditions, keep=keep, model=MODEL, now=clock
        )
    return facts, clock


@settings(max_examples=300, deadline=None)
@given(rules, history, st.integers(0, 8 * 3600))
def test_bounded_facts_answer_as_the_full_history(
    raw: object, events: list[tuple[str, int, int]], later: int
) -> None:
    rule = parse_rule(raw)
    bounded, clock = build(rule, events, keep_all=False)
    full, _ = build(rule, events, keep_all=True)
    t = clock + timedelta(seconds=later)
    assert evaluate(rule, bounded, MODEL, t) == evaluate(rule, full, MODEL, t)


@settings(max_examples=300, deadline=None)
@given(rules, history, st.integers(0, 4 * 3600), st.lists(st.floats(0.001, 0.999), max_size=6))
def test_answer_changes_only_at_the_named_instants(
    raw: object, events: list[tuple[str, int, int]], later: int, fractions: list[float]
) -> None:
    rule = parse_rule(raw)
    facts, clock = build(rule, events, keep_all=False)
    t = clock + timedelta(seconds=later)
    horizon = next_change(rule, facts, MODEL, t)
    end = horizon if horizon is not None else t + timedelta(days=30)
    first = evaluate(rule, facts, MODEL, t + (end - t) * 0.0005)
    samples = [t + (end - t) * f for f in fractions]
    samples.append(end - timedelta(milliseconds=1))  # a late horizon would show here
    for s in samples:
        if s > t:
            assert evaluate(rule, facts, MODEL, s) == first


@settings(max_examples=300, deadline=None)
@given(rules, history, st.integers(0, 4 * 3600))
def test_one_walk_answers_as_evaluate_and_next_change(
    raw: object, events: list[tuple[str, int, int]], later: int
) -> None:
    rule = parse_rule(raw)
    facts, clock = build(rule, events, keep_all=False)
    t = clock + timedelta(seconds=later)
    expected = (evaluate(rule, facts, MODEL, t), next_change(rule, facts, MODEL, t))
    assert evaluate_with_next_change(rule, facts, MODEL, t) == expected


def test_three_views_in_ten_minutes_leave_when_the_window_slides_past() -> None:
    rule = parse_rule({"event": {"type": "product_view", "atLeast": 3, "within": "PT10M"}})
    facts, _ = build(rule, [("product_view", s, 0) for s in (0, 60, 120)], keep_all=False)
    t = START + timedelta(minutes=3)
    assert evaluate(rule, facts, MODEL, t)
    leaves = next_change(rule, facts, MODEL, t)
    assert leaves == START + timedelta(minutes=10)  # the first view, 10 minutes on
    assert not evaluate(rule, facts, MODEL, leaves)


def test_a_score_threshold_is_left_just_after_the_decay_crosses_it() -> None:
    rule = parse_rule({"score": {"op": "gte", "value": 5}})
    facts, _ = build(rule, [("purchase", 0, 0)], keep_all=False)  # 10, halving hourly
    leaves = next_change(rule, facts, MODEL, START)
    assert leaves is not None and abs(leaves - (START + timedelta(hours=1))) < timedelta(
        milliseconds=1
    )
    assert evaluate(rule, facts, MODEL, leaves) is False
