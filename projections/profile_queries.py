"""Reads of the profile read model for the query side: profiles, with their engagement score
and segments, in one script call per CHUNK customers."""

from __future__ import annotations

import asyncio
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
from projections.versions import KEY_CACHE, ServingVersions


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


# One script call reads everything a page of profiles needs, atomically (as a MULTI would,
# with one command on the wire). KEYS: the version pointer, the in-service list, the segment
# definitions, then five keys per customer; ARGV[1]: how many recent items. Definitions
# travel only when the in-service list is missing (data from before it existed).
#
# Each profile comes back as one JSON text, put together from the JSON its fields already
# hold (names and plain strings escaped by cjson), or "" where there is none: the query
# side parses it in one orjson call. As ~45 separate strings, converting them for the reply
# and parsing them one by one in Python was most of a profile read's cost (on 500 profiles:
# Redis 18-20 ms as nested replies, 16-18 ms as texts; Python's parse 26 us a profile,
# 5 us as one text). Fields it does not know (the consent stamps "cs:") stay behind.
READ = """
local enc, sub, concat = cjson.encode, string.sub, table.concat
local function array(t) return #t == 0 and '[]' or enc(t) end
local out = {redis.call('HGETALL', KEYS[1])}
local serving = redis.call('GET', KEYS[2])
out[2] = serving
out[3] = serving and {} or redis.call('HGETALL', KEYS[3])
local recent = tonumber(ARGV[1])
for i = 4, #KEYS, 5 do
  local h = redis.call('HGETALL', KEYS[i])
  if #h == 0 then
    out[#out + 1] = ''
  else
    local head, t, n, c = {}, {}, {}, {}
    for j = 1, #h, 2 do
      local k, v = h[j], h[j + 1]
      local kind = sub(k, 1, 2)
      if kind == 't:' then t[#t + 1] = enc(sub(k, 3)) .. ':' .. v
      elseif kind == 'n:' then n[#n + 1] = enc(sub(k, 3)) .. ':' .. v
      elseif kind == 'c:' then c[#c + 1] = enc(sub(k, 3)) .. ':' .. v
      elseif k == 'cid' or k == 'first' then head[#head + 1] = enc(k) .. ':' .. enc(v)
      elseif k == 'v' then head[#head + 1] = '"v":' .. v
      end
    end
    local items = recent > 0 and redis.call('ZREVRANGE', KEYS[i + 1], 0, recent - 1) or {}
    local score = redis.call('HMGET', KEYS[i + 2], 'v', 'ref')
    head[#head + 1] = '"t":{' .. concat(t, ',') .. '}'
    head[#head + 1] = '"n":{' .. concat(n, ',') .. '}'
    head[#head + 1] = '"c":{' .. concat(c, ',') .. '}'
    head[#head + 1] = '"r":[' .. concat(items, ',') .. ']'
    head[#head + 1] = '"s":' .. (score[1] and enc(score[1]) or 'null')
    head[#head + 1] = '"ref":' .. (score[2] and enc(score[2]) or 'null')
    head[#head + 1] = '"p":' .. array(redis.call('ZRANGE', KEYS[i + 3], 0, -1, 'WITHSCORES'))
    head[#head + 1] = '"m":' .. array(redis.call('SMEMBERS', KEYS[i + 4]))
    out[#out + 1] = '{' .. concat(head, ',') .. '}'
  end
end
return out
"""


CHUNK = 100  # ids per script call: a read of 500 profiles is five calls, parsed as they come

# A profile's JSON text as READ put it together ("" where there is none), and the segments in
# service when it was read.
Stored = tuple[str, frozenset[str]]


class ProfileQueries:
    """Reads profiles, up to CHUNK in one script call; `client` is a redis.asyncio client (str
    replies).

    Each call also reads the version pointer, so it never mixes versions and never reads one
    a rebuild is still writing; after a switch it is repeated once. Concurrent callers share
    script calls (`coalescing`)."""

    def __init__(
        self,
        client: Any,
        namespace: str,
        score_model: ScoreModel,
        clock: Callable[[], datetime],
    ) -> None:
        self._read = client.register_script(READ)
        # Eight calls out (bench profiles(500): 24,950-27,395/s). With two, a batch's five
        # chunks waited for each other (18,100/s). With every chunk out at once (16,730-
        # 17,675/s), Valkey ran all the scripts queued in a pass of its loop before writing
        # any reply: this process waited, then parsed while Valkey idled.
        self._coalescing: Coalescing[Stored] = Coalescing(self._read_many, limit=8, most=CHUNK)
        self._namespace = namespace
        self._versions = ServingVersions(namespace)
        self._score_model = score_model
        self._clock = clock

    async def get(self, customer_id: str, recent: int = 10) -> ProfileView | None:
        return (await self.get_many([customer_id], recent))[0]

    async def get_many(
        self, customer_ids: Sequence[str], recent: int = 10
    ) -> list[ProfileView | None]:
        if len(customer_ids) <= CHUNK:
            return await self._views(customer_ids, recent)
        # By chunks, all asked at once: this process parses one while Redis reads the next,
        # and Redis runs smaller scripts (the bare endpoint's batch: 26,685 profiles/s in one
        # call, 34,430 in chunks). Each chunk is atomic on its own: every profile is whole and
        # from one serving version, though chunks may straddle a rebuild's switch.
        chunks = [customer_ids[i : i + CHUNK] for i in range(0, len(customer_ids), CHUNK)]
        parts = await asyncio.gather(*(self._views(chunk, recent) for chunk in chunks))
        return [view for part in parts for view in part]

    async def _views(self, customer_ids: Sequence[str], recent: int) -> list[ProfileView | None]:
        # Parsed here, after the shared read has given its place to the next one: parsing
        # inside it held Redis idle while this process parsed (profiles(500): 18,825/s).
        stored = await self._coalescing.read(customer_ids, max(recent, 0))
        now = self._clock()
        return [
            self._view(cid, text, live, now) if text else None
            for cid, (text, live) in zip(customer_ids, stored, strict=True)
        ]

    async def _read_many(self, customer_ids: list[str], recent: int) -> list[Stored]:
        while True:
            versions = [self._versions.serving(n) for n in _READS]
            members = _keys_at(self._namespace, *versions)[2]
            names = [self._versions.key, members.in_service, members.definitions]
            for cid in customer_ids:
                names += _customer_keys(self._namespace, *versions, cid)
            pointer, serving, definitions, *stored = await self._read(names, [recent])
            if self._versions.confirm(_pairs(pointer), _READS):
                break
        # A retired segment may linger in a profile's set until that profile next changes.
        live = _in_service(serving) if serving is not None else _live(_pairs(definitions))
        return [(text, live) for text in stored]

    def _view(
        self, customer_id: str, text: str, live: frozenset[str], now: datetime
    ) -> ProfileView:
        p = orjson.loads(text)
        flat = p["p"]
        due = [(flat[j], float(flat[j + 1])) for j in range(0, len(flat), 2)]
        return ProfileView(
            customer_id=p.get("cid", customer_id),
            version=int(p.get("v", 0)),
            traits=p["t"],
            consent_states=p["c"],
            interaction_counts=p["n"],
            first_seen=p.get("first"),
            recent=tuple(p["r"]),
            engagement_score=score_at(self._score_model, p["s"], p["ref"], due, now),
            segments=tuple(sorted(s for s in p["m"] if s in live)),
        )


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


@lru_cache(maxsize=KEY_CACHE)  # keyed by plain values: hashing UUIDs and key classes cost more
def _customer_keys(
    namespace: str,
    profile_version: int,
    score_version: int,
    segments_version: int,
    customer_id: str,
) -> tuple[str, str, str, str, str]:
    """One customer's keys for READ, in its order."""
    profiles, scores, members = _keys_at(
        namespace, profile_version, score_version, segments_version
    )
    uid = customer_uuid(customer_id)
    return (
        profiles.profile(uid),
        profiles.recent(uid),
        scores.score(uid),
        scores.pending(uid),
        members.of(uid),
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
