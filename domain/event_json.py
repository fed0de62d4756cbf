"""An event's own fields as plain JSON values with camelCase names: what the audit history
shows and what the relay publishes, so both describe an event alike."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.consent import ConsentState
from domain.normalise import format_utc
from domain.privacy import FORGOTTEN

ENVELOPE = {"originator_id", "originator_version", "timestamp", "originator_topic", FORGOTTEN}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_utc(value)
    if isinstance(value, ConsentState):
        return {camel(k): plain(v) for k, v in vars(value).items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def event_data(event: object) -> dict[str, Any]:
    """The fields the event carries beyond its stream, version and time."""
    return {camel(k): plain(v) for k, v in vars(event).items() if k not in ENVELOPE}
