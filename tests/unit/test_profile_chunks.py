"""A large profile read goes to Redis in chunks, and every caller gets its profiles in order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson

from domain.ids import customer_uuid
from domain.score import ScoreModel
from projections.profile_queries import CHUNK, ProfileQueries

PER_CUSTOMER = 5  # keys READ takes per customer, after its three shared ones


class FakeReadScript:
    """READ's answers from a dict of customers, as the script shapes them: the pointer, the
    in-service list, no definitions, then one JSON text per customer ("" where none)."""

    def __init__(self, known: dict[str, str]) -> None:
        self.by_uuid = {str(customer_uuid(c)): c for c in known}
        self.known = known
        self.calls: list[int] = []  # customers each call asked for

    async def __call__(self, keys: Sequence[str], args: Sequence[object]) -> list[object]:
        customers = keys[3::PER_CUSTOMER]
        self.calls.append(len(customers))
        await asyncio.sleep(0)  # another chunk's call may start meanwhile
        texts = []
        for key in customers:
            cid = self.by_uuid.get(key[key.index("{") + 1 : key.index("}")])
            texts.append("" if cid is None else _text(cid, self.known[cid]))
        return [[], '["vip"]', [], *texts]


class FakeClient:
    def __init__(self, script: FakeReadScript) -> None:
        self.script = script

    def register_script(self, source: str) -> FakeReadScript:
        return self.script


def _text(cid: str, name: str) -> str:
    return orjson.dumps(
        {
            "cid": cid,
            "v": 1,
            "t": {"name": name},
            "n": {},
            "c": {},
            "r": [],
            "s": None,
            "ref": None,
            "p": [],
            "m": ["vip"],
        }
    ).decode()


def _queries(known: dict[str, str]) -> tuple[ProfileQueries, FakeReadScript]:
    script = FakeReadScript(known)
    now = datetime(2026, 12, 4, tzinfo=UTC)
    return ProfileQueries(FakeClient(script), "t:", ScoreModel(), lambda: now), script


def test_a_read_of_more_than_a_chunk_answers_every_id_in_its_place() -> None:
    known = {f"c-{n}": f"name-{n}" for n in range(0, 2 * CHUNK + 30, 2)}  # every other id
    ids = [f"c-{n}" for n in range(2 * CHUNK + 30)]
    queries, script = _queries(known)

    views = asyncio.run(queries.get_many(ids))

    assert [v.customer_id if v else None for v in views] == [i if i in known else None for i in ids]
    assert [v.traits["name"] for v in views if v] == [known[i] for i in ids if i in known]
    assert sorted(script.calls) == [30, CHUNK, CHUNK]  # in chunks, none larger


def test_a_read_within_a_chunk_is_one_script_call() -> None:
    known = {f"c-{n}": "x" for n in range(CHUNK)}
    queries, script = _queries(known)

    views = asyncio.run(queries.get_many(list(known)))

    assert all(v is not None and v.segments == ("vip",) for v in views)
    assert script.calls == [CHUNK]
