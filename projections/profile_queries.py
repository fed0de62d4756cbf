"""Reads of the profile read model for the query side: profiles, with their engagement score
and segments, in one round trip."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson

from adapters.hiredis_connections import Transactions, pack
from domain.consent import ConsentPurpose
from domain.ids import customer_uuid
from domain.score import ScoreModel
from projections import score, segment_keys
from projections.coalescing import Coalescing
from projections.profile import NAME, ProfileKeys
from projections.score import ScoreKeys, score_at
from projections.segment_keys import SegmentKeys
from projections.segment_state import is_live
from projections.versions import KEY_CACHE, ServingVersions, pointer_key


@dataclass(frozen=True)
class ConsentView:
    purpose: ConsentPurpose
    granted: bool
    source: str | None
    policy_version: str | None
    changed: str | None  # as stored: format_utc's spelling

    @property
    def changed_at(self) -> datetime | None:
        return _time(self.changed)


@dataclass(frozen=True)
class ProfileView:
    """A profile as read: stored JSON values already parsed, times in their stored spelling
    (an answer sends them as they are; `..._at` parses them for those who need datetimes)."""

    customer_id: str
    version: int
    traits: dict[str, Any]
    consent_states: dict[str, dict[str, Any]]  # purpose -> its stored state
    interaction_counts: dict[str, int]
    first_seen: str | None
    recent: tuple[dict[str, Any], ...]  # newest first
    engagement_score: float = 0.0  # valued at query time: it decays without writes
    segments: tuple[str, ...] = ()

    def _granted(self, purpose: str) -> bool:
        state = self.consent_states.get(purpose)
        return state is not None and state["granted"] is True

    @property
    def consents(self) -> tuple[ConsentView, ...]:
        return tuple(
            ConsentView(
                _PURPOSES[name], s["granted"], s["source"], s["policyVersion"], s["changedAt"]
            )
            for name, s in sorted(self.consent_states.items())
            if name in _PURPOSES
        )

    # By the purposes' values: an enum member's lookup cost more than the rest of the check.
    @property
    def can_email(self) -> bool:
        return self._granted(_EMAIL)

    @property
    def can_personalize(self) -> bool:
        return self._granted(_PERSONALIZATION)

    @property
    def last_seen(self) -> str | None:
        return str(self.recent[0]["occurredAt"]) if self.recent else None

    @property
    def first_seen_at(self) -> datetime | None:
        return _time(self.first_seen)

    @property
    def last_seen_at(self) -> datetime | None:
        return _time(self.last_seen)

    def blanked(self) -> ProfileView:
        """Behavioural data stays out of sight without PERSONALIZATION consent."""
        if self.can_personalize:
            return self
        return ProfileView(
            self.customer_id, self.version, self.traits, self.consent_states, {}, None, ()
        )


def _time(raw: str | None) -> datetime | None:
    return datetime.fromisoformat(raw) if raw else None


_PURPOSES = {p.value: p for p in ConsentPurpose}
_EMAIL, _PERSONALIZATION = ConsentPurpose.EMAIL.value, ConsentPurpose.PERSONALIZATION.value


# A profile read is one transaction (MULTI ... EXEC, `adapters.hiredis_connections`): the
# version pointer, the in-service segment list, then five commands per customer (its profile
# hash, newest recent items, score, pending contributions, segment memberships), atomic, so
# it never mixes versions and never reads one a rebuild is still writing. The segment
# definitions are read only where the in-service list is missing (data from before it).
#
# No Lua: a script that read the same and returned each profile as one JSON text cost Redis
# about three times the CPU (`bench --only query`, "Redis CPU per profile"); converting every
# reply into Lua strings and back was most of it. Redis is the one core every query process
# shares; the service's own share of the work (parsing the replies) grew, and query
# processes can be added.
#
# A customer's five replies, as RESP3 gives them (the query pool speaks it): the profile hash
# as a dict (empty where there is none), lists, the pending contributions as [member, score].
Stored = tuple[Any, ...]
HEAD = 2  # replies before the customers': the pointer, the in-service list


class ProfileQueries:
    """Reads profiles with one round trip each; `transactions` runs them on the query side's
    Redis connections.

    After a rebuild switch (the pointer read with them names other versions) the read is
    repeated once. Concurrent callers share transactions (`coalescing`)."""

    def __init__(
        self,
        transactions: Transactions,
        namespace: str,
        score_model: ScoreModel,
        clock: Callable[[], datetime],
    ) -> None:
        self._transactions = transactions
        self._coalescing: Coalescing[tuple[Stored, frozenset[str]]] = Coalescing(self._read_many)
        self._namespace = namespace
        self._versions = ServingVersions(namespace)
        self._score_model = score_model
        self._clock = clock

    async def get(self, customer_id: str, recent: int = 10) -> ProfileView | None:
        return (await self.get_many([customer_id], recent))[0]

    async def get_many(
        self, customer_ids: Sequence[str], recent: int = 10
    ) -> list[ProfileView | None]:
        # Parsed here, after the shared read has given its place to the next one: parsing
        # inside it held Redis idle while this process parsed (profiles(500): 18,825/s).
        stored = await self._coalescing.read(customer_ids, max(recent, 0))
        now = self._clock()
        return [
            self._view(cid, replies, live, now) if replies[0] else None
            for cid, (replies, live) in zip(customer_ids, stored, strict=True)
        ]

    async def _read_many(
        self, customer_ids: list[str], recent: int
    ) -> list[tuple[Stored, frozenset[str]]]:
        definitions = False
        while True:
            versions = tuple(self._versions.serving(n) for n in _READS)
            packed, count = read_transaction(
                self._namespace, versions, customer_ids, recent, definitions=definitions
            )
            replies = await self._transactions.run(packed, count)
            pointer, serving = replies[0], replies[1]
            if not self._versions.confirm(pointer, _READS):
                continue
            if serving is None and not definitions:
                definitions = True  # data from before the list: read what it is made from
                continue
            break
        # A retired segment may linger in a profile's set until that profile next changes.
        live = _in_service(serving) if serving is not None else _live(replies[2])
        at = HEAD + (1 if definitions else 0)
        return [
            (tuple(replies[at + 5 * n : at + 5 * n + 5]), live) for n in range(len(customer_ids))
        ]

    def _view(
        self, customer_id: str, stored: Stored, live: frozenset[str], now: datetime
    ) -> ProfileView:
        fields, items, (value, ref), pending, members = stored
        traits: dict[str, str] = {}
        counts: dict[str, int] = {}
        consents: dict[str, str] = {}
        for name, raw in fields.items():
            kind = name[:2]
            if kind == "t:":
                traits[name[2:]] = raw
            elif kind == "n:":
                counts[name[2:]] = int(raw)
            elif kind == "c:":
                consents[name[2:]] = raw
            # the rest: cid, v, first, read below; the consent stamps ("cs:"), not read
        # Every stored JSON value of the profile parsed in one orjson call, not one per value.
        parsed = orjson.loads("[" + ",".join([*traits.values(), *consents.values(), *items]) + "]")
        n_traits, n_states = len(traits), len(traits) + len(consents)
        return ProfileView(
            customer_id=fields.get("cid", customer_id),
            version=int(fields.get("v", 0)),
            traits=dict(zip(traits, parsed[:n_traits], strict=True)),
            consent_states=dict(zip(consents, parsed[n_traits:n_states], strict=True)),
            interaction_counts=counts,
            first_seen=fields.get("first"),
            recent=tuple(parsed[n_states:]),
            engagement_score=score_at(self._score_model, value, ref, pending, now),
            segments=tuple(sorted(s for s in members if s in live)),
        )


@lru_cache(maxsize=16)  # the list changes when a segment is defined or retired
def _in_service(raw: str) -> frozenset[str]:
    return frozenset(orjson.loads(raw))


def _live(definitions: dict[str, str]) -> frozenset[str]:
    return frozenset(k for k, v in definitions.items() if is_live(v))


_READS = (NAME, score.NAME, segment_keys.NAME)  # the read models a profile read spans


def read_transaction(
    namespace: str,
    versions: Sequence[int],
    customer_ids: Sequence[str],
    recent: int,
    *,
    definitions: bool = False,
) -> tuple[bytes, int]:
    """One profile read's commands, packed, and how many replies they give: the pointer, the
    in-service list (and the definitions, if asked), then five per customer."""
    profile_version, score_version, segments_version = versions
    members = _keys_at(namespace, profile_version, score_version, segments_version)[2]
    head = [("HGETALL", pointer_key(namespace)), ("GET", members.in_service)]
    if definitions:
        head.append(("HGETALL", members.definitions))
    customers = b"".join(
        _customer_commands(namespace, profile_version, score_version, segments_version, c, recent)
        for c in customer_ids
    )
    return pack(head) + customers, len(head) + 5 * len(customer_ids)


@lru_cache(maxsize=KEY_CACHE)  # keyed by plain values: hashing UUIDs and key classes cost more
def _customer_commands(
    namespace: str,
    profile_version: int,
    score_version: int,
    segments_version: int,
    customer_id: str,
    recent: int,
) -> bytes:
    """One customer's five commands, packed, in the order `_view` takes their replies."""
    profiles, scores, members = _keys_at(
        namespace, profile_version, score_version, segments_version
    )
    uid = customer_uuid(customer_id)
    return pack(
        [
            ("HGETALL", profiles.profile(uid)),
            # Newest first; "1 0" is an empty range, where "0 -1" would be all of them.
            ("ZREVRANGE", profiles.recent(uid), 0, recent - 1)
            if recent
            else ("ZREVRANGE", profiles.recent(uid), 1, 0),
            ("HMGET", scores.score(uid), "v", "ref"),
            ("ZRANGE", scores.pending(uid), 0, -1, "WITHSCORES"),
            ("SMEMBERS", members.of(uid)),
        ]
    )


@lru_cache(maxsize=64)
def _keys_at(
    namespace: str, profile_version: int, score_version: int, segments_version: int
) -> tuple[ProfileKeys, ScoreKeys, SegmentKeys]:
    return (
        ProfileKeys(namespace, profile_version),
        ScoreKeys(namespace, score_version),
        SegmentKeys(namespace, segments_version),
    )
