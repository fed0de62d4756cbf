"""The personal-data mapper on a hand-written key holder: sealing, forgetting, tampering."""

from __future__ import annotations

import os
from collections.abc import Collection
from datetime import UTC, datetime
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    MapperDeserialisationError,
    StoredEvent,
    UUIDAsHex,
)

from adapters.personal_mapper import PersonalDataMapper
from domain.consent import ConsentPurpose
from domain.customer import Customer
from domain.privacy import forgotten, holds_personal_data
from domain.transcodings import ConsentStateAsDict

AT = datetime(2026, 5, 1, tzinfo=UTC)


class InMemoryKeys:
    def __init__(self) -> None:
        self.keys: dict[UUID, dict[int, AESGCM]] = {}

    def for_writing(self, uid: UUID) -> tuple[int, AESGCM]:
        versions = self.keys.setdefault(uid, {1: AESGCM(os.urandom(32))})
        return max(versions), versions[max(versions)]

    def for_reading(self, uid: UUID, version: int) -> AESGCM | None:
        return self.keys.get(uid, {}).get(version)

    def load(self, ids: Collection[UUID]) -> None:
        pass

    def forget(self, ids: Collection[UUID]) -> None:
        pass

    def shred(self, uid: UUID) -> None:
        self.keys[uid] = {}


def mapper() -> tuple[PersonalDataMapper, InMemoryKeys]:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DatetimeAsISO(), DecimalAsStr(), ConsentStateAsDict()):
        transcoder.register(transcoding)
    keys = InMemoryKeys()
    return PersonalDataMapper(transcoder, keys), keys


def customer() -> Customer:
    c = Customer.register("ada-1", at=AT)
    c.update_traits({"email": "ada@example.org"}, source="crm", at=AT)
    c.record_interaction(
        event_id="e-1",
        type="page_view",
        occurred_at=AT,
        session_id="s-9",
        channel="web",
        properties={"note": "secret-note", "currency": "CHF"},
        currency="CHF",
        at=AT,
    )
    c.change_consent(
        ConsentPurpose.EMAIL,
        granted=True,
        source="form-x",
        policy_version="v1",
        occurred_at=AT,
        at=AT,
    )
    return c


def test_personal_fields_are_sealed_and_the_rest_stays_readable() -> None:
    m, _ = mapper()
    events = customer().collect_events()
    stored = [m.to_stored_event(e) for e in events]
    for value in (
        b"ada-1",
        b"ada@example.org",
        b"secret-note",
        b"s-9",
        b"form-x",
        b"crm",
        b'"CHF"',
    ):
        assert all(value not in s.state for s in stored), value
    assert b"page_view" in stored[2].state and b"e-1" in stored[2].state
    back = [m.to_domain_event(s) for s in stored]
    assert [vars(b) for b in back] == [vars(e) for e in events]


def test_without_the_key_events_load_forgotten_with_personal_fields_none() -> None:
    m, keys = mapper()
    c = customer()
    stored = [m.to_stored_event(e) for e in c.collect_events()]
    keys.shred(c.id)
    back = [m.to_domain_event(s) for s in stored]
    assert all(forgotten(e) for e in back)
    interaction = back[2]
    assert isinstance(interaction, Customer.InteractionRecorded)
    # Typed as present, read as None: the key that sealed them is gone.
    assert [vars(interaction)[f] for f in ("properties", "session_id", "currency")] == [None] * 3
    assert (interaction.event_id, interaction.type) == ("e-1", "page_view")
    rebuilt = Customer.Registered.mutate(back[0], None)  # type: ignore[arg-type]
    assert rebuilt is not None


def test_a_snapshot_without_its_key_restores_an_empty_but_usable_customer() -> None:
    m, keys = mapper()
    c = customer()
    c.collect_events()
    stored = m.to_stored_event(Snapshot.take(c))
    assert b"ada@example.org" not in stored.state
    keys.shred(c.id)
    restored = m.to_domain_event(stored).mutate(None)  # type: ignore[attr-defined]
    assert (restored.traits, restored.consents, restored.customer_id) == ({}, {}, "")


def test_sealed_data_moved_to_another_event_fails_authentication() -> None:
    m, _ = mapper()
    events = customer().collect_events()
    a, b = m.to_stored_event(events[1]), m.to_stored_event(events[2])
    moved = StoredEvent(b.originator_id, b.originator_version, a.topic, a.state)
    with pytest.raises(MapperDeserialisationError, match="fails authentication"):
        m.to_domain_event(moved)


def test_state_without_personal_data_is_stored_as_plain_json() -> None:
    m, _ = mapper()
    c = customer()
    c.collect_events()
    c.erase(reason="request", requested_by="dpo", at=AT)
    (erased,) = c.collect_events()
    stored = m.to_stored_event(erased)
    assert stored.state.startswith(b"{")
    assert m.to_stored_event(Snapshot.take(c)).state.startswith(b"{")


def test_our_events_split_as_any_event_does() -> None:
    """The per-class fast split must store exactly what the generic one would, key order too."""
    sealing, _keys = mapper()
    ada = customer()  # registered, traits, an interaction, a grant
    ada.change_consent(
        ConsentPurpose.EMAIL, granted=False, source="f", policy_version=None, occurred_at=AT, at=AT
    )
    ada.erase(reason="asked", requested_by="dpo", at=AT)
    events = ada.collect_events()
    assert {type(e).__name__ for e in events} == {
        "Registered", "TraitsUpdated", "InteractionRecorded", "ConsentGranted",
        "ConsentWithdrawn", "ProfileErased",
    }  # fmt: skip
    for event in events:
        fast, generic = sealing._parts(event), sealing._any_parts(event)
        assert fast == generic
        assert [list(part) for part in fast[2:]] == [list(part) for part in generic[2:]]


@pytest.mark.parametrize(
    ("values", "personal"),
    [
        ({"a": None, "b": "", "c": {}, "d": []}, False),
        ({}, False),
        ({"a": 0}, True),
        ({"a": False}, True),
        ({"a": ()}, True),
        ({"a": None, "b": "x"}, True),
        ({"a": {"k": None}}, True),
        ({"a": [None]}, True),
    ],
)
def test_only_empty_values_hold_no_personal_data(values: dict[str, object], personal: bool) -> None:
    assert holds_personal_data(values) is personal
