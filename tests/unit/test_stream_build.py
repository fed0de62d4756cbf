"""The pieces of a rebuild's stream pass that need no server: how the stream ids are shared out,
and the profile model writing each profile's version once per page."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID, uuid4

import pytest

from domain.customer import Customer
from projections.ops import Drop, Put
from projections.profile import ProfileKeys, page_changes
from projections.stream_build import Plan

NOW = datetime(2026, 11, 22, 9, tzinfo=UTC)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shares_cover_every_stream_id_once_in_order(count: int) -> None:
    shares = [Plan(100, count).share(k) for k in range(count)]
    assert shares[0].first == UUID(int=0)
    assert shares[-1].last == UUID(int=(1 << 128) - 1)
    for before, after in itertools.pairwise(shares):
        assert before.first < before.last
        assert after.first.int == before.last.int + 1
    assert len({s.field for s in shares}) == count


def test_a_plan_reads_back_as_written() -> None:
    assert Plan.parse(Plan(1_000_604, 2).text()) == Plan(1_000_604, 2)


E = TypeVar("E")


def event(cls: type[E], uid: UUID, version: int, **fields: object) -> E:
    # The library's metaclass makes the fields; mypy sees only the base class's.
    make: Any = cls
    made: E = make(originator_id=uid, originator_version=version, timestamp=NOW, **fields)
    return made


def interaction(uid: UUID, version: int) -> Customer.InteractionRecorded:
    return event(
        Customer.InteractionRecorded,
        uid,
        version,
        event_id=f"e-{version}",
        type="page_view",
        occurred_at=NOW,
        session_id=None,
        channel=None,
        properties={},
        currency=None,
    )


def erased(uid: UUID, version: int) -> Customer.ProfileErased:
    return event(Customer.ProfileErased, uid, version, reason="request", requested_by="dpo")


def versions_put(ops: list[object]) -> list[tuple[str, str]]:
    return [(op.key, op.value) for op in ops if isinstance(op, Put) and op.field == "v"]


def test_a_page_sets_each_profile_version_once_from_its_last_event() -> None:
    keys, a, b = ProfileKeys("t:"), uuid4(), uuid4()
    page = [(1, interaction(a, 2)), (2, interaction(b, 2)), (3, interaction(a, 3))]
    assert versions_put(list(page_changes(page, keys))) == [
        (keys.profile(a), "3"),
        (keys.profile(b), "2"),
    ]


def test_no_version_is_written_after_an_erasure_in_the_same_page() -> None:
    keys, a = ProfileKeys("t:"), uuid4()
    ops = page_changes([(1, interaction(a, 2)), (2, erased(a, 3))], keys)
    assert versions_put(list(ops)) == []
    assert ops[-1] == Drop(keys.recent(a))  # the drop is the last word on the profile
