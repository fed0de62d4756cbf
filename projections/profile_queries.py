"""Reads of the profile read model for the query side: profiles, with their engagement score
and segments, in one round trip."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson

from domain.consent import ConsentPurpose
from domain.ids import customer_uuid
from domain.score import ScoreModel
from projections import score, segment_keys
from projections.coalescing import Coalescing
from projections.profile import NAME, ProfileKeys
from projections.score import ScoreKeys, score_at
from projections.segment_keys import SegmentKeys
from projections.segment_state import is_live
from projections.versions import ServingVersions


@dataclass(frozen=True)
class ConsentView:
    purpose: ConsentPurpose
    granted: bool
    source: str | None
    policy_version: str | None
    changed_at: datetime | None


@dataclass(frozen=True)
class ProfileView:
    customer_id: str
    version: int
    traits: dict[str, Any]
    consents: tuple[ConsentView, ...]
    interaction_counts: dict[str, int]
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    recent: tuple[dict[str, Any], ...]
    engagement_score: float = 0.0  # valued at query time: it decays without writes
    segments: tuple[str, ...] = ()

    def consent(self, purpose: ConsentPurpose) -> bool:
        return any(c.granted for c in self.consents if c.purpose is purpose)

    @property
    def can_email(self) -> bool:
        return self.consent(ConsentPurpose.EMAIL)

    @property
    def can_personalize(self) -> bool:
        return self.consent(ConsentPurpose.PERSONALIZATION)

    def blanked(self) -> ProfileView:
        """Behavioural data stays out of sight without PERSONALIZATION consent."""
        if self.can_personalize:
            return self
        return ProfileView(
            self.customer_id, self.version, self.traits, self.consents, {}, None, None, (), 0.0, ()
        )


def _time(raw: str | None) -> datetime | None:
    return datetime.fromisoformat(raw) if raw else None


_PURPOSES = {p.value: p for p in ConsentPurpose}


def parse_profile(
    customer_id: str,
    fields: Sequence[str],
    recent: Sequence[str],
    engagement_score: float = 0.0,
    segments: tuple[str, ...] = (),
) -> ProfileView:
    """A view of the profile hash (`fields`: field, value, field, value... as HGETALL in a
    script returns it) and its newest recent items."""
    traits, counts, consents = {}, {}, []
    customer, version, first = customer_id, 0, None
    for i in range(0, len(fields), 2):
        name, raw = fields[i], fields[i + 1]
        kind = name[:2]  # "t:", "n:", "c:"; "cs:" stamps, "cid", "v", "first"
        if kind == "t:":
            traits[name[2:]] = orjson.loads(raw)
        elif kind == "n:":
            counts[name[2:]] = int(raw)
        elif kind == "c:":
            c = orjson.loads(raw)
            changed = _time(c["changedAt"])
            purpose = _PURPOSES[name[2:]]
            consents.append(
                ConsentView(purpose, c["granted"], c["source"], c["policyVersion"], changed)
            )
        elif name == "cid":
            customer = raw
        elif name == "v":
            version = int(raw)
        elif name == "first":
            first = _time(raw)
    consents.sort(key=lambda c: c.purpose.value)
    items = tuple(orjson.loads(item) for item in recent)
    return ProfileView(
        customer_id=customer,
        version=version,
        traits=traits,
        consents=tuple(consents),
        interaction_counts=counts,
        first_seen_at=first,
        last_seen_at=_time(items[0]["occurredAt"]) if items else None,
        recent=items,
        engagement_score=engagement_score,
        segments=segments,
    )


# One script call reads everything a page of profiles needs, atomically (as a MULTI would,
# with one command on the wire instead of 2 + 5 per profile: redis-py's per-command cost was
# a quarter of the query process's CPU). KEYS: the version pointer, the in-service list, the
# segment definitions, then five keys per customer; ARGV[1]: how many recent items.
# Definitions travel only when the in-service list is missing (data from before it existed).
READ = """
local out = {redis.call('HGETALL', KEYS[1])}
local serving = redis.call('GET', KEYS[2])
out[2] = serving
out[3] = serving and {} or redis.call('HGETALL', KEYS[3])
local recent = tonumber(ARGV[1])
for i = 4, #KEYS, 5 do
  out[#out + 1] = redis.call('HGETALL', KEYS[i])
  out[#out + 1] = recent > 0 and redis.call('ZREVRANGE', KEYS[i + 1], 0, recent - 1) or {}
  out[#out + 1] = redis.call('HGETALL', KEYS[i + 2])
  out[#out + 1] = redis.call('ZRANGE', KEYS[i + 3], 0, -1, 'WITHSCORES')
  out[#out + 1] = redis.call('SMEMBERS', KEYS[i + 4])
end
return out
"""


class ProfileQueries:
    """Reads profiles with one round trip each; `client` is a redis.asyncio client (str replies).

    The read is one script call that also reads the version pointer, so it never mixes
    versions and never reads one a rebuild is still writing; after a switch it is repeated
    once. Concurrent callers share script calls (`coalescing`)."""

    def __init__(
        self,
        client: Any,
        namespace: str,
        score_model: ScoreModel,
        clock: Callable[[], datetime],
    ) -> None:
        self._read = client.register_script(READ)
        self._coalescing: Coalescing[ProfileView | None] = Coalescing(self._read_many)
        self._namespace = namespace
        self._versions = ServingVersions(namespace)
        self._score_model = score_model
        self._clock = clock

    async def get(self, customer_id: str, recent: int = 10) -> ProfileView | None:
        return (await self.get_many([customer_id], recent))[0]

    async def get_many(
        self, customer_ids: Sequence[str], recent: int = 10
    ) -> list[ProfileView | None]:
        return await self._coalescing.read(customer_ids, max(recent, 0))

    async def _read_many(self, customer_ids: list[str], recent: int) -> list[ProfileView | None]:
        uids = [customer_uuid(cid) for cid in customer_ids]
        while True:
            keys = _keys_at(self._namespace, *(self._versions.serving(n) for n in _READS))
            profiles, scores, members = keys
            names = [self._versions.key, members.in_service, members.definitions]
            for uid in uids:
                names += (profiles.profile(uid), profiles.recent(uid), scores.score(uid),
                          scores.pending(uid), members.of(uid))  # fmt: skip
            pointer, serving, definitions, *replies = await self._read(names, [recent])
            if self._versions.confirm(_pairs(pointer), _READS):
                break
        # A retired segment may linger in a profile's set until that profile next changes.
        live = _in_service(serving) if serving is not None else _live(_pairs(definitions))
        now = self._clock()
        views: list[ProfileView | None] = []
        for i, cid in enumerate(customer_ids):
            fields, items, scored, pending, member_of = replies[5 * i : 5 * i + 5]
            if not fields:
                views.append(None)
                continue
            due = [(pending[j], float(pending[j + 1])) for j in range(0, len(pending), 2)]
            engagement = score_at(self._score_model, _pairs(scored), due, now)
            joined = tuple(sorted(s for s in member_of if s in live))
            views.append(parse_profile(cid, fields, items, engagement, joined))
        return views


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    """A hash as a script returns it: field, value, field, value..."""
    it = iter(flat)
    return dict(zip(it, it, strict=True))


@lru_cache(maxsize=16)  # the list changes when a segment is defined or retired
def _in_service(raw: str) -> frozenset[str]:
    return frozenset(orjson.loads(raw))


def _live(definitions: dict[str, str]) -> frozenset[str]:
    return frozenset(k for k, v in definitions.items() if is_live(v))


_READS = (NAME, score.NAME, segment_keys.NAME)  # the read models a profile read spans


@lru_cache(maxsize=64)
def _keys_at(
    namespace: str, profile_version: int, score_version: int, segments_version: int
) -> tuple[ProfileKeys, ScoreKeys, SegmentKeys]:
    return (
        ProfileKeys(namespace, profile_version),
        ScoreKeys(namespace, score_version),
        SegmentKeys(namespace, segments_version),
    )
