"""Every cache a request can fill is bounded in bytes, not just in entries: past its bound,
new documents and new customer ids cost no more memory."""

from __future__ import annotations

import gc
import tracemalloc
import uuid
import weakref
from collections.abc import Callable

from adapters.collector import CyclePacer
from adapters.settings import RequestLimits
from api.documents import Checked, DocumentCache, check
from api.fast_path import MAX_PLANNED_CHARS, plan
from api.query_schema import build_query_schema
from domain.ids import customer_uuid
from domain.normalise import MAX_ID_LENGTH
from projections.profile import ProfileKeys
from projections.score import ScoreKeys
from projections.segment_keys import SegmentKeys

LIMITS = RequestLimits()
SCHEMA = build_query_schema()._schema


def aliases(n: int, tag: str) -> str:
    return "{ " + " ".join(f"{tag}{i}: __typename" for i in range(n)) + " }"


def small(tag: str) -> str:
    return f'query {tag} {{ profile(customerId: "{tag}") {{ traits canEmail segments }} }}'


def checked(text: str) -> Checked:
    return check(SCHEMA, text, LIMITS)


def traced_growth(work: Callable[[], object]) -> int:
    """Bytes still allocated after `work` (and a collection) than before it."""
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    work()
    gc.collect()
    return tracemalloc.get_traced_memory()[0] - before


def test_document_cache_stays_within_its_byte_budget_and_drops_the_oldest_first() -> None:
    cache = DocumentCache(budget=DocumentCache.weight(small("q00000")) * 50)
    texts = [small(f"q{n:05d}") for n in range(200)]
    for text in texts:
        cache.put(text, checked(text))
        assert cache.used <= cache.budget
    assert len(cache) == 50
    assert cache.get(texts[0]) is None
    assert cache.get(texts[-1]) is not None


def test_document_cache_keeps_the_documents_in_use() -> None:
    cache = DocumentCache(budget=DocumentCache.weight(small("q00000")) * 20)
    hot = small("hot00")
    cache.put(hot, checked(hot))
    for n in range(100):
        assert cache.get(hot) is not None  # each use moves it to the young end
        text = small(f"q{n:05d}")
        cache.put(text, checked(text))
    assert cache.get(hot) is not None


def test_a_document_over_a_sixteenth_of_the_budget_is_checked_but_not_kept() -> None:
    cache = DocumentCache(budget=1_000_000)
    big = aliases(100, "a")
    assert DocumentCache.weight(big) > cache.budget // 16
    cache.put(big, checked(big))
    assert len(cache) == 0 and cache.used == 0


def test_the_cache_estimate_is_no_less_than_what_its_documents_really_hold() -> None:
    budget = 2_000_000
    cache = DocumentCache(budget)
    kinds = [
        lambda n: aliases(90, f"a{n}_"),
        small,
        lambda n: f"{{ segments {{ id rule state size }} s{n}: segments {{ id }} }}",
    ]
    texts = [kinds[n % 3](f"d{n}") for n in range(600)]

    def fill() -> None:
        for text in texts:
            cache.put(text, checked(text))

    tracemalloc.start()
    try:
        held = traced_growth(fill)
    finally:
        tracemalloc.stop()
    assert cache.used <= budget
    # What it holds beyond its own texts (which the test holds anyway) is within the estimate.
    assert held <= cache.used, (held, cache.used)


def test_per_customer_caches_stop_growing_past_their_bounds() -> None:
    profiles, scores, members = ProfileKeys("t:", 1), ScoreKeys("t:", 1), SegmentKeys("t:", 1)

    def read_fresh_ids() -> None:
        # What a profile read derives from a customer id never seen before, at the longest
        # id a read accepts.
        for _ in range(25_000):
            uid = customer_uuid(uuid.uuid4().hex.ljust(MAX_ID_LENGTH, "x"))
            profiles.profile(uid), profiles.recent(uid), scores.score(uid)
            scores.pending(uid), members.of(uid)

    tracemalloc.start()
    try:
        first = traced_growth(read_fresh_ids)  # fills every cache to its bound
        second = traced_growth(read_fresh_ids)
    finally:
        tracemalloc.stop()
    assert first > 5_000_000  # the caches did fill: the measure would see growth
    assert second < 500_000, f"{second} bytes more for 25,000 more ids"


def test_the_fast_path_leaves_long_documents_to_strawberry() -> None:
    mutation = "mutation($input: InteractionInput!) { recordInteraction(input: $input) { id } }"
    assert plan(mutation, None) is not None
    padded = mutation + " " * MAX_PLANNED_CHARS
    assert plan(padded, None) is None


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_large_work_collects_the_cycles_it_left_once_its_budget_is_spent() -> None:
    pacer = CyclePacer(budget=4 << 20, smallest=1 << 20)
    was = gc.isenabled()
    gc.disable()  # as if the thresholds were too high to ever reach
    try:
        left = Cycle()
        alive = weakref.ref(left)
        del left
        pacer.spent(512 << 10)  # small work: left to the thresholds
        for _ in range(3):
            pacer.spent(1 << 20)
        assert alive() is not None and pacer.collections == 0
        pacer.spent(1 << 20)
        assert alive() is None and pacer.collections == 1
    finally:
        if was:
            gc.enable()
