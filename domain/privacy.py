"""Which stored fields are personal data, and how an event looks once its customer was erased.

The event store is append-only, so erasure works by crypto-shredding: the fields named here are
stored encrypted with the customer's own key, and erasing the customer deletes that key. The
events stay (history still shows what happened and when); their personal fields read as None,
and the event says so (`forgotten`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventsourcing.domain import Snapshot

from domain.customer import Customer

# Field names per stored class. A snapshot's personal data lies inside its `state`.
#
# `currency` names no one by itself, but it is a copy of part of `properties`: kept in clear it
# would outlive the erasure of the properties it came from, and an erased customer's v2 events
# would still show a currency where the v1 ones (upcast from None properties) show none.
PERSONAL_FIELDS: Mapping[type, tuple[str, ...]] = {
    Customer.Registered: ("customer_id",),
    Customer.InteractionRecorded: ("session_id", "properties", "currency"),
    Customer.TraitsUpdated: ("traits", "source"),
    Customer.ConsentGranted: ("source",),
    Customer.ConsentWithdrawn: ("source",),
}
PERSONAL_SNAPSHOT_STATE: tuple[str, ...] = ("customer_id", "traits", "consents")

# Set in an event's state by the mapper when its personal fields could not be decrypted.
FORGOTTEN = "_forgotten"


def personal_fields(cls: type) -> tuple[str, ...]:
    return PERSONAL_FIELDS.get(cls, ())


# The types whose empty values (and None) say nothing about anyone.
_EMPTY_WHEN_FALSY = (str, dict, list)


def holds_personal_data(values: Mapping[str, Any]) -> bool:
    """Empty values say nothing about anyone: an erased customer's snapshot needs no key.
    (None, "", {} and [] are empty; 0 and False are data.) Asked of every event written."""
    for value in values.values():
        if value or (value is not None and not isinstance(value, _EMPTY_WHEN_FALSY)):
            return True
    return False


def forgotten(event: object) -> bool:
    """True for an event whose personal data was erased with its customer's key."""
    return bool(getattr(event, "__dict__", {}).get(FORGOTTEN, False))


def is_customer_snapshot(event: object) -> bool:
    return isinstance(event, Snapshot) and event.topic.endswith(":Customer")
