"""Stores events and snapshots with their personal fields encrypted under the customer's key.

Stored state, when it holds personal data:

    0x01 | key version (u16) | length of the clear part (u32) | clear JSON | nonce (12) | sealed

The clear part is everything the audit needs without the customer (type, times, eventId,
purpose, policy version); the sealed part is AES-256-GCM over the personal fields' JSON, bound
to the event's stream and version so that it cannot be moved to another event. State without
personal data (segments, an erasure, an erased customer's snapshot) stays plain JSON, as does
anything written before encryption existed.

When the key is gone (the customer was erased) an event still loads: its personal fields read
as None and it is marked forgotten (`domain.privacy.forgotten`); a snapshot's personal state
reads as empty, so the aggregate it restores stays usable.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Collection, Sequence
from datetime import datetime
from functools import cache
from typing import Any, Protocol, cast
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.domain import DomainEventProtocol, Snapshot
from eventsourcing.persistence import (
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    Transcoder,
)
from eventsourcing.utils import get_topic, resolve_topic

from adapters.event_json import EventJSON
from domain.customer import Customer
from domain.privacy import (
    FORGOTTEN,
    PERSONAL_FIELDS,
    PERSONAL_SNAPSHOT_STATE,
    holds_personal_data,
    personal_fields,
)


class KeyLookup(Protocol):
    """What the mapper needs of the key holder (adapters.data_keys.PostgresDataKeys)."""

    def for_writing(self, uid: UUID) -> tuple[int, AESGCM]: ...

    def for_reading(self, uid: UUID, version: int) -> AESGCM | None: ...

    def load(self, ids: Collection[UUID]) -> None: ...

    def forget(self, ids: Collection[UUID]) -> None: ...


SEALED = b"\x01"
_HEADER = struct.Struct(">HI")
_NONCE = 12
_EMPTY_SNAPSHOT_STATE: dict[str, Any] = {"customer_id": "", "traits": {}, "consents": {}}
_CUSTOMER_TOPIC = get_topic(Customer)


# Per event class of ours: its personal fields, what the clear part leaves out, its version.
_PLANS: dict[type, tuple[tuple[str, ...], frozenset[str], int]] = {
    cls: (
        names,
        frozenset((*names, "originator_id", "originator_version")),
        getattr(cls, "class_version", 1),
    )
    for cls, names in PERSONAL_FIELDS.items()
}


@cache
def _topic(cls: type) -> str:
    return get_topic(cls)


def _aad(originator_id: UUID, version: int) -> bytes:
    return originator_id.bytes + version.to_bytes(8, "big")


class PersonalDataMapper(Mapper[UUID]):
    def __init__(self, transcoder: Transcoder, keys: KeyLookup) -> None:
        super().__init__(transcoder)
        self.keys = keys
        self.json = EventJSON(transcoder)

    # ---------------------------------------------------------------- writing

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        return self.to_stored_events([domain_event])[0]

    def to_stored_events(
        self, domain_events: Sequence[DomainEventProtocol[UUID]]
    ) -> list[StoredEvent]:
        """A transaction's events: each customer's key is looked up once, and the nonces come
        from one read of the OS's random source (the same bytes as one read per event)."""
        nonces = os.urandom(_NONCE * len(domain_events))
        ciphers: dict[UUID, tuple[int, AESGCM]] = {}
        stored: list[StoredEvent] = []
        for n, domain_event in enumerate(domain_events):
            nonce = nonces[n * _NONCE : (n + 1) * _NONCE]
            stored.append(self._stored(domain_event, nonce, ciphers))
        return stored

    def _stored(
        self,
        domain_event: DomainEventProtocol[UUID],
        nonce: bytes,
        ciphers: dict[UUID, tuple[int, AESGCM]],
    ) -> StoredEvent:
        uid, version, personal, clear = self._parts(domain_event)
        encode = self.json.encode
        timestamp = clear.get("timestamp")
        if type(timestamp) is datetime:
            self.json.share(timestamp)
        if not holds_personal_data(personal):
            stored = encode(self._join(domain_event, clear, personal))
        else:
            key = ciphers.get(uid)
            if key is None:
                key = ciphers[uid] = self.keys.for_writing(uid)
            key_version, cipher = key
            sealed = cipher.encrypt(nonce, encode(personal), _aad(uid, version))
            clear_json = encode(clear)
            stored = b"".join(
                (SEALED, _HEADER.pack(key_version, len(clear_json)), clear_json, nonce, sealed)
            )
        return StoredEvent(uid, version, _topic(type(domain_event)), stored)

    def _parts(
        self, domain_event: DomainEventProtocol[UUID]
    ) -> tuple[UUID, int, dict[str, Any], dict[str, Any]]:
        """Stream id, version, and the state to store: its personal part and its clear part."""
        plan = _PLANS.get(type(domain_event))
        if plan is None:
            return self._any_parts(domain_event)
        # One of ours (most events): split straight from the event, as _any_parts would. (A
        # subclass that splits one of these differently overrides this, not only _split.)
        names, leave_out, class_version = plan
        values: dict[str, Any] = vars(domain_event)
        personal = {k: values[k] for k in names if k in values}
        clear = {k: v for k, v in values.items() if k not in leave_out}
        if class_version > 1:
            clear["class_version"] = class_version
        return values["originator_id"], values["originator_version"], personal, clear

    def _any_parts(
        self, domain_event: DomainEventProtocol[UUID]
    ) -> tuple[UUID, int, dict[str, Any], dict[str, Any]]:
        state = dict(vars(domain_event))
        uid: UUID = state.pop("originator_id")
        version: int = state.pop("originator_version")
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        personal, clear = self._split(domain_event, state)
        return uid, version, personal, clear

    @staticmethod
    def _split(event: object, state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        if isinstance(event, Snapshot):
            if event.topic != _CUSTOMER_TOPIC:
                return {}, state
            inner = dict(state["state"])
            personal = {k: inner.pop(k) for k in PERSONAL_SNAPSHOT_STATE if k in inner}
            return personal, {**state, "state": inner}
        return {k: state.pop(k) for k in personal_fields(type(event)) if k in state}, state

    @staticmethod
    def _join(event: object, clear: dict[str, Any], personal: dict[str, Any]) -> dict[str, Any]:
        if isinstance(event, Snapshot):
            return {**clear, "state": {**clear["state"], **personal}}
        return {**clear, **personal}

    # ---------------------------------------------------------------- reading

    def prefetch(self, originator_ids: Collection[UUID]) -> None:
        """Loads the keys a page of events needs in one query, not one per customer."""
        self.keys.load(originator_ids)

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        blob = stored_event.state
        if blob[:1] != SEALED:
            event = super().to_domain_event(stored_event)
            if isinstance(event, Customer.ProfileErased):
                # Stale cached keys must not decrypt this customer's events again (a rebuild).
                self.keys.forget([event.originator_id])
            return event
        uid = cast(UUID, stored_event.originator_id)
        key_version, clear_len = _HEADER.unpack_from(blob, 1)
        start = 1 + _HEADER.size
        clear: dict[str, Any] = self.transcoder.decode(blob[start : start + clear_len])
        nonce = blob[start + clear_len : start + clear_len + _NONCE]
        sealed = blob[start + clear_len + _NONCE :]
        cls = resolve_topic(stored_event.topic)
        cipher = self.keys.for_reading(uid, key_version)
        snapshot = issubclass(cls, Snapshot)
        if cipher is None:
            personal = (
                dict(_EMPTY_SNAPSHOT_STATE) if snapshot else dict.fromkeys(personal_fields(cls))
            )
            clear[FORGOTTEN] = True
        else:
            try:
                aad = _aad(uid, stored_event.originator_version)
                personal = self.transcoder.decode(cipher.decrypt(nonce, sealed, aad))
            except InvalidTag:
                raise MapperDeserialisationError(
                    f"personal data of {stored_event.topic} {uid} v"
                    f"{stored_event.originator_version} fails authentication with key version "
                    f"{key_version}: the row was altered or the key table does not match"
                ) from None
        state = (
            {**clear, "state": {**clear["state"], **personal}}
            if snapshot
            else {**clear, **personal}
        )
        event = self._event(cls, uid, stored_event.originator_version, state)
        return cast(DomainEventProtocol[UUID], event)

    def _event(self, cls: type, uid: UUID, version: int, state: dict[str, Any]) -> Any:
        """What the library's mapper does after decoding: ids, version, upcasting."""
        state["originator_id"] = uid
        state["originator_version"] = version
        class_version = getattr(cls, "class_version", 1)
        from_version = state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        event: Any = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return event
