"""Commands: validated, normalised requests to change a customer, and what each one returned.

Parsing happens before a command reaches the application, so a bad input never takes a place in
a shared transaction; each error names the path of the offending field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from domain.consent import ConsentPurpose
from domain.currency import currency_code
from domain.errors import InvalidInput
from domain.normalise import (
    SNAKE_CASE,
    format_utc,
    normalise_traits,
    parse_utc,
    validate_name,
    validate_properties,
)

MAX_FUTURE_SKEW = timedelta(minutes=5)
MAX_BATCH = 1_000  # recordInteractions: inputs per call (one transaction)


def _event_time(value: object, field: str, now: datetime) -> datetime:
    if not isinstance(value, (str, datetime)):
        raise InvalidInput(field, "must be an RFC 3339 date-time with an offset")
    occurred_at = parse_utc(value, field)
    if occurred_at > now + MAX_FUTURE_SKEW:
        raise InvalidInput(
            field,
            f"{format_utc(occurred_at)} is more than 5 minutes after the service clock "
            f"({format_utc(now)}); send the time the event happened, with its UTC offset",
        )
    return occurred_at


def _optional_text(value: object, field: str, max_len: int = 200) -> str | None:
    if value is None:
        return None
    return validate_name(value, field, max_len=max_len)


@dataclass(frozen=True)
class RecordInteraction:
    event_id: str
    customer_id: str
    type: str
    occurred_at: datetime
    session_id: str | None
    channel: str | None
    properties: dict[str, Any]

    @classmethod
    def parse(cls, raw: Mapping[str, object], *, now: datetime, field: str) -> RecordInteraction:
        """`raw` uses the contract's camelCase names (InteractionInput)."""
        return cls(
            event_id=validate_name(raw.get("eventId"), f"{field}.eventId"),
            customer_id=validate_name(raw.get("customerId"), f"{field}.customerId"),
            type=validate_name(raw.get("type"), f"{field}.type", pattern=SNAKE_CASE, max_len=64),
            occurred_at=_event_time(raw.get("occurredAt"), f"{field}.occurredAt", now),
            session_id=_optional_text(raw.get("sessionId"), f"{field}.sessionId"),
            channel=_optional_text(raw.get("channel"), f"{field}.channel", max_len=64),
            properties=validate_properties(raw.get("properties"), f"{field}.properties"),
        )

    @property
    def currency(self) -> str | None:
        # InteractionInput has no currency of its own (and the contract stays as it is), so
        # properties are the only source; a code of the wrong shape is no error, just none.
        return currency_code(self.properties)


@dataclass(frozen=True)
class UpdateTraits:
    customer_id: str
    traits: dict[str, Any]
    source: str | None
    event_id: str | None = None  # optional idempotency key, claimed as an interaction's is

    @classmethod
    def parse(cls, raw: Mapping[str, object], *, field: str) -> UpdateTraits:
        return cls(
            customer_id=validate_name(raw.get("customerId"), f"{field}.customerId"),
            traits=normalise_traits(raw.get("traits"), f"{field}.traits"),
            source=_optional_text(raw.get("source"), f"{field}.source"),
            event_id=_optional_text(raw.get("eventId"), f"{field}.eventId"),
        )


@dataclass(frozen=True)
class ChangeConsent:
    customer_id: str
    purpose: ConsentPurpose
    granted: bool
    source: str
    policy_version: str | None
    occurred_at: datetime
    event_id: str | None = None  # optional idempotency key, claimed as an interaction's is

    @classmethod
    def parse(
        cls, raw: Mapping[str, object], *, granted: bool, now: datetime, field: str
    ) -> ChangeConsent:
        purpose_raw = raw.get("purpose")
        try:
            purpose = ConsentPurpose(str(purpose_raw).upper())
        except ValueError:
            allowed = ", ".join(p.value for p in ConsentPurpose)
            raise InvalidInput(
                f"{field}.purpose", f"{purpose_raw!r} is not a purpose; use one of {allowed}"
            ) from None
        occurred_raw = raw.get("occurredAt")
        return cls(
            customer_id=validate_name(raw.get("customerId"), f"{field}.customerId"),
            purpose=purpose,
            granted=granted,
            source=validate_name(raw.get("source"), f"{field}.source"),
            policy_version=_optional_text(raw.get("policyVersion"), f"{field}.policyVersion"),
            occurred_at=now
            if occurred_raw is None
            else _event_time(occurred_raw, f"{field}.occurredAt", now),
            event_id=_optional_text(raw.get("eventId"), f"{field}.eventId"),
        )


@dataclass(frozen=True)
class EraseProfile:
    customer_id: str
    reason: str
    requested_by: str

    @classmethod
    def parse(cls, raw: Mapping[str, object], *, field: str) -> EraseProfile:
        return cls(
            customer_id=validate_name(raw.get("customerId"), f"{field}.customerId"),
            reason=validate_name(raw.get("reason"), f"{field}.reason", max_len=500),
            requested_by=validate_name(raw.get("requestedBy"), f"{field}.requestedBy"),
        )


Command = RecordInteraction | UpdateTraits | ChangeConsent | EraseProfile


def event_id_of(command: Command) -> str | None:
    """The idempotency key a command carries, if any (an erasure is idempotent by itself)."""
    return None if isinstance(command, EraseProfile) else command.event_id


@dataclass(frozen=True)
class CommandResult:
    id: str
    version: int
    position: int
    duplicate: bool = False
    suppressed: bool = False
