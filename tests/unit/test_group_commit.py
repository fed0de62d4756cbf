"""The group committer's deadlines, with a fake store and a fake monotonic clock."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from domain.batch import Outcome
from domain.commands import Command, CommandResult, UpdateTraits
from domain.errors import StoreUnavailable
from domain.group_commit import GroupCommitter


class Store:
    """Records what it was asked to store, and with which deadline."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float | None]] = []

    def execute(self, units: Sequence[Sequence[Command]], deadline: float | None) -> list[Outcome]:
        self.calls.append((len(units), deadline))
        return [[CommandResult(u[0].customer_id, 1, 1)] for u in units]


def unit(customer: str) -> list[Command]:
    return [UpdateTraits.parse({"customerId": customer, "traits": {"country": "DE"}}, field="x")]


def test_a_unit_still_queued_at_its_deadline_is_refused_without_being_sent() -> None:
    store = Store()
    now = [100.0]
    committer = GroupCommitter(store.execute, monotonic=lambda: now[0])
    late = committer.submit(unit("c-1"), deadline=99.0)
    with pytest.raises(StoreUnavailable, match="nothing was written"):
        late.result(timeout=5)
    committer.close()
    assert store.calls == []


def test_a_transaction_carries_the_soonest_deadline_of_its_units() -> None:
    store = Store()
    committer = GroupCommitter(store.execute, monotonic=lambda: 0.0)
    answered = committer.submit(unit("c-1"), deadline=7.0).result(timeout=5)
    committer.submit(unit("c-2")).result(timeout=5)
    committer.close()
    assert isinstance(answered, list) and answered[0].id == "c-1"
    assert store.calls == [(1, 7.0), (1, None)]
