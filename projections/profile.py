"""The profile read model: traits, consents, interaction counts, first/last seen, recent items.

Event handlers are pure (event -> view changes); the query reads one profile with one Redis
round trip. Keys carry the customer's stream id in a hash tag, so a cluster keeps each
profile's keys together, and no raw customer id ever appears in a key name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from uuid import UUID

import orjson

from domain.customer import Customer
from domain.normalise import format_utc
from domain.privacy import forgotten
from projections.ops import Drop, Incr, Keep, Least, Op, Put, PutIfNewer, Remove
from projections.versions import FIRST, KEY_CACHE, glob

NAME = "profile"
# The stored shape this code writes. Bump it when that changes, then `profiles rebuild profile`:
# a projector never writes a version built with another schema.
SCHEMA = 1
RECENT_KEPT = 50


@dataclass(frozen=True)
class ProfileKeys:
    namespace: str = ""
    version: int = FIRST

    def profile(self, uid: UUID) -> str:
        return _profile_key(self.namespace, self.version, uid)

    def recent(self, uid: UUID) -> str:
        return f"{self.profile(uid)}:recent"

    @property
    def tracking(self) -> str:
        return f"{self.namespace}projection:{NAME}:v{self.version}"

    @property
    def patterns(self) -> list[str]:
        return [glob(f"{self.namespace}profile:v{self.version}:")]


@lru_cache(maxsize=KEY_CACHE)  # UUID.__str__ is Python code; a batch formats each key many times
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


def _changes(event: object, keys: ProfileKeys) -> list[Op] | None:
    """The event's own changes; None when it changes nothing, not even the version."""
    if forgotten(event):
        return None  # its customer was erased: nothing of it may be shown
    uid: UUID = event.originator_id  # type: ignore[attr-defined]
    if isinstance(event, Customer.ProfileErased):
        return [Drop(keys.profile(uid)), Drop(keys.recent(uid))]
    handler = HANDLERS.get(type(event))
    return None if handler is None else handler(event, keys)


def _version(event: Any, keys: ProfileKeys) -> Put:
    return Put(keys.profile(event.originator_id), "v", str(event.originator_version))


def page_changes(events: Sequence[tuple[int, object]], keys: ProfileKeys) -> list[Op]:
    """A page's changes. Each profile's version ("v", so the view says which history it
    reflects) is set once, from its last event there that changed it."""
    ops: list[Op] = []
    last: dict[UUID, object] = {}
    for _, event in events:
        mine = _changes(event, keys)
        if mine is None:
            continue
        ops += mine
        uid: UUID = event.originator_id  # type: ignore[attr-defined]
        if mine and isinstance(mine[0], Drop):
            last.pop(uid, None)  # nothing may follow a drop but what a later event writes
        else:
            last[uid] = event
    return [*ops, *(_version(event, keys) for event in last.values())]


@dataclass(frozen=True)
class ProfileReadModel:
    keys: ProfileKeys
    name: str = NAME
    schema: int = SCHEMA

    @property
    def version(self) -> int:
        return self.keys.version

    @property
    def tracking_key(self) -> str:
        return self.keys.tracking

    @property
    def key_patterns(self) -> list[str]:
        return self.keys.patterns

    def page_changes(self, events: Sequence[tuple[int, object]]) -> list[Op]:
        return page_changes(events, self.keys)
