"""Compacting a batch's view changes leaves the same end state as applying each of them."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.ops import (
    Drop,
    Greatest,
    Incr,
    Keep,
    Least,
    Op,
    Put,
    PutIfNewer,
    Remove,
    compact,
)

Store = dict[str, Any]


def apply(store: Store, ops: list[Op], trim_at_end: bool = False) -> Store:
    """What the Lua script does, in Python: the reference for the compaction.

    With `trim_at_end`, sorted sets are trimmed once after all additions, as `encode` sends them.
    """
    trims: dict[str, int] = {}
    for op in ops:
        match op:
            case Incr(key, field, by):
                h = store.setdefault(key, {})
                h[field] = h.get(field, 0) + by
            case Put(key, field, value):
                store.setdefault(key, {})[field] = value
            case Remove(key, field):
                store.setdefault(key, {}).pop(field, None)
            case Least(key, field, value):
                h = store.setdefault(key, {})
                h[field] = min(h.get(field, value), value)
            case Greatest(key, field, value):
                h = store.setdefault(key, {})
                h[field] = max(h.get(field, value), value)
            case PutIfNewer(key, field, value, stamp_field, stamp):
                h = store.setdefault(key, {})
                if stamp_field not in h or stamp >= h[stamp_field]:
                    h[field], h[stamp_field] = value, stamp
            case Keep(key, score, member, keep):
                z = store.setdefault(key, {})
                z[member] = score
                trims[key] = keep
                if not trim_at_end:
                    _trim(store, key, keep)
            case Drop(key):
                store.pop(key, None)
    for key, keep in trims.items():
        if key in store:
            _trim(store, key, keep)
    return {k: v for k, v in store.items() if v}


def _trim(store: Store, key: str, keep: int) -> None:
    ranked = sorted(store[key].items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
    store[key] = dict(ranked[:keep])


keys = st.sampled_from(["a", "b"])
# Each field is written by one kind of op, as the read models guarantee.
op = st.one_of(
    st.builds(Incr, keys, st.just("n:view"), st.integers(1, 3)),
    st.builds(Put, keys, st.just("t:email"), st.sampled_from(["x", "y"])),
    st.builds(Remove, keys, st.just("t:email")),
    st.builds(Least, keys, st.just("first"), st.sampled_from(["2026-01", "2026-02", "2026-03"])),
    st.builds(Greatest, keys, st.just("last"), st.sampled_from(["2026-01", "2026-02"])),
    st.builds(
        PutIfNewer,
        keys,
        st.just("c:EMAIL"),
        st.sampled_from(["on", "off"]),
        st.just("cs:EMAIL"),
        st.sampled_from(["1", "2", "3"]),
    ),
    st.builds(
        Keep,
        st.sampled_from(["z1", "z2"]),
        st.integers(0, 5).map(float),
        st.sampled_from(list("pqrstu")),
        st.just(3),
    ),
    st.builds(Drop, st.sampled_from(["a", "z1"])),
)


@settings(max_examples=400)
@given(st.lists(op, max_size=30))
def test_compacted_ops_leave_the_same_state(ops: list[Op]) -> None:
    assert apply({}, compact(ops), trim_at_end=True) == apply({}, ops)


def test_compaction_merges_repeated_writes_of_one_field() -> None:
    ops: list[Op] = [Incr("k", "n", 1), Incr("k", "n", 2), Put("k", "v", "1"), Put("k", "v", "2")]
    assert compact(ops) == [Incr("k", "n", 3), Put("k", "v", "2")]
