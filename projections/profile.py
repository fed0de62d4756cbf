"""The profile read model: traits, consents, interaction counts, first/last seen, recent items.

Event handlers are pure (event -> view changes); the query reads one profile with one Redis
round trip. Keys carry the customer's stream id in a hash tag, so a cluster keeps each
profile's keys together, and no raw customer id ever appears in a key name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

import orjson

from domain.consent import ConsentPurpose
from domain.customer import Customer
from domain.ids import customer_uuid
from domain.normalise import format_utc
from domain.privacy import forgotten
from domain.score import ScoreModel
from projections.ops import Drop, Incr, Keep, Least, Op, Put, PutIfNewer, Remove
from projections.score import ScoreKeys, score_at
from projections.segment_state import is_live
from projections.segments import SegmentKeys

NAME = "profile"
VERSION = 1  # bump when the stored shape changes; the rebuild writes the new keys beside the old
RECENT_KEPT = 50


@dataclass(frozen=True)
class ProfileKeys:
    namespace: str = ""
    version: int = VERSION

    def profile(self, uid: UUID) -> str:
        return _profile_key(self.namespace, self.version, uid)

    def recent(self, uid: UUID) -> str:
        return f"{self.profile(uid)}:recent"

    @property
    def tracking(self) -> str:
        return f"{self.namespace}projection:{NAME}:v{self.version}"


@lru_cache(maxsize=100_000)  # UUID.__str__ is Python code; a batch formats each key many times
def _profile_key(namespace: str, version: int, uid: UUID) -> str:
    return f"{namespace}profile:v{version}:{{{uid}}}"


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# ------------------------------------------------------------------ event handlers


def registered(e: Customer.Registered, k: ProfileKeys) -> list[Op]:
    return [Put(k.profile(e.originator_id), "cid", e.customer_id)]


def interaction_recorded(e: Customer.InteractionRecorded, k: ProfileKeys) -> list[Op]:
    key, at = k.profile(e.originator_id), format_utc(e.occurred_at)
    item = {
        "eventId": e.event_id,
        "type": e.type,
        "occurredAt": at,
        "channel": e.channel,
        "sessionId": e.session_id,
        "properties": e.properties,
    }
    return [
        Incr(key, f"n:{e.type}"),
        # Last seen needs no field of its own: it is the newest recent item's time.
        Least(key, "first", at),
        Keep(k.recent(e.originator_id), e.occurred_at.timestamp(), _dumps(item), RECENT_KEPT),
    ]


def traits_updated(e: Customer.TraitsUpdated, k: ProfileKeys) -> list[Op]:
    key = k.profile(e.originator_id)
    return [
        Remove(key, f"t:{name}") if value is None else Put(key, f"t:{name}", _dumps(value))
        for name, value in e.traits.items()
    ]


def consent_changed(e: Customer.ConsentChanged, k: ProfileKeys) -> list[Op]:
    state = {"granted": e.granted, "source": e.source, "policyVersion": e.policy_version}
    at = format_utc(e.occurred_at)
    return [
        PutIfNewer(
            k.profile(e.originator_id),
            f"c:{e.purpose}",
            _dumps({**state, "changedAt": at}),
            f"cs:{e.purpose}",
            at,
        )
    ]


HANDLERS: dict[type, Callable[[Any, ProfileKeys], list[Op]]] = {
    Customer.Registered: registered,
    Customer.InteractionRecorded: interaction_recorded,
    Customer.TraitsUpdated: traits_updated,
    Customer.ConsentGranted: consent_changed,
    Customer.ConsentWithdrawn: consent_changed,
}


def changes(event: object, keys: ProfileKeys) -> list[Op]:
    """Every event also sets the version, so the view says which history it reflects."""
    if forgotten(event):
        return []  # its customer was erased: nothing of it may be shown
    uid: UUID = event.originator_id  # type: ignore[attr-defined]
    if isinstance(event, Customer.ProfileErased):
        return [Drop(keys.profile(uid)), Drop(keys.recent(uid))]
    handler = HANDLERS.get(type(event))
    if handler is None:
        return []
    ops = handler(event, keys)
    return [*ops, Put(keys.profile(uid), "v", str(event.originator_version))]  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ProfileReadModel:
    keys: ProfileKeys
    name: str = NAME
    version: int = VERSION

    @property
    def tracking_key(self) -> str:
        return self.keys.tracking

    def page_changes(self, events: Sequence[tuple[int, object]]) -> list[Op]:
        return [op for _, event in events for op in changes(event, self.keys)]


# ------------------------------------------------------------------ query


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
    """Reads profiles with one round trip each; `client` is a redis.asyncio client (str replies)."""

    def __init__(
        self,
        client: Any,
        keys: ProfileKeys,
        score_keys: ScoreKeys,
        score_model: ScoreModel,
        clock: Callable[[], datetime],
        segment_keys: SegmentKeys,
    ) -> None:
        self._client = client
        self._keys = keys
        self._segment_keys = segment_keys
        self._score_keys = score_keys
        self._score_model = score_model
        self._clock = clock

    async def get(self, customer_id: str, recent: int = 10) -> ProfileView | None:
        return (await self.get_many([customer_id], recent))[0]

    async def get_many(
        self, customer_ids: Sequence[str], recent: int = 10
    ) -> list[ProfileView | None]:
        # MULTI/EXEC: a profile is never read half-way through a projector's batch.
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._segment_keys.definitions)
            for cid in customer_ids:
                uid = customer_uuid(cid)
                pipe.hgetall(self._keys.profile(uid))
                pipe.zrevrange(self._keys.recent(uid), 0, max(recent, 0) - 1)
                pipe.hgetall(self._score_keys.score(uid))
                pipe.zrange(self._score_keys.pending(uid), 0, -1, withscores=True)
                pipe.smembers(self._segment_keys.of(uid))
            definitions, *replies = await pipe.execute()
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
