"""Reads of the profile read model for the query side: one profile, with its engagement score
and segments, in one round trip."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from domain.consent import ConsentPurpose
from domain.ids import customer_uuid
from domain.score import ScoreModel
from projections import score, segment_keys
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


def parse_profile(customer_id: str, fields: dict[str, str], recent: Sequence[str]) -> ProfileView:
    traits, counts, consents = {}, {}, []
    for name, raw in fields.items():
        kind, _, rest = name.partition(":")
        if kind == "t":
            traits[rest] = json.loads(raw)
        elif kind == "n":
            counts[rest] = int(raw)
        elif kind == "c":
            c = json.loads(raw)
            consents.append(
                ConsentView(
                    ConsentPurpose(rest),
                    c["granted"],
                    c["source"],
                    c["policyVersion"],
                    _time(c["changedAt"]),
                )
            )
    consents.sort(key=lambda c: c.purpose.value)
    return ProfileView(
        customer_id=fields.get("cid", customer_id),
        version=int(fields.get("v", "0")),
        traits=traits,
        consents=tuple(consents),
        interaction_counts=counts,
        first_seen_at=_time(fields.get("first")),
        last_seen_at=_time(json.loads(recent[0])["occurredAt"]) if recent else None,
        recent=tuple(json.loads(item) for item in recent),
    )


class ProfileQueries:
    """Reads profiles with one round trip each; `client` is a redis.asyncio client (str replies).

    The read is one MULTI that also reads the version pointer, so it never mixes versions and
    never reads one a rebuild is still writing; after a switch it is repeated once."""

    def __init__(
        self,
        client: Any,
        namespace: str,
        score_model: ScoreModel,
        clock: Callable[[], datetime],
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._versions = ServingVersions(namespace)
        self._score_model = score_model
        self._clock = clock

    async def get(self, customer_id: str, recent: int = 10) -> ProfileView | None:
        return (await self.get_many([customer_id], recent))[0]

    async def get_many(
        self, customer_ids: Sequence[str], recent: int = 10
    ) -> list[ProfileView | None]:
        uids = [customer_uuid(cid) for cid in customer_ids]
        while True:
            keys = _keys_at(self._namespace, *(self._versions.serving(n) for n in _READS))
            profiles, scores, members = keys
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hgetall(self._versions.key)
                pipe.hgetall(members.definitions)
                for uid in uids:
                    pipe.hgetall(profiles.profile(uid))
                    pipe.zrevrange(profiles.recent(uid), 0, max(recent, 0) - 1)
                    pipe.hgetall(scores.score(uid))
                    pipe.zrange(scores.pending(uid), 0, -1, withscores=True)
                    pipe.smembers(members.of(uid))
                pointer, definitions, *replies = await pipe.execute()
            if self._versions.confirm(pointer, _READS):
                break
        # A retired segment may linger in a profile's set until that profile next changes.
        live = {k for k, v in definitions.items() if is_live(v)}
        now = self._clock()
        views: list[ProfileView | None] = []
        for i, cid in enumerate(customer_ids):
            fields, items, score, pending, member_of = replies[5 * i : 5 * i + 5]
            if not fields:
                views.append(None)
                continue
            view = parse_profile(cid, fields, items if recent > 0 else [])
            engagement = score_at(self._score_model, score, pending, now)
            joined = tuple(sorted(s for s in member_of if s in live))
            views.append(replace(view, engagement_score=engagement, segments=joined))
        return views


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
