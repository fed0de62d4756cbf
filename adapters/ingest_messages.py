"""What a message on the interactions topic means: a command, or why it is dead-lettered.

The door has three checks, cheapest first: size, JSON, then the JSON Schema of its `kind`
(`adapters/schemas/*.json`, the published contract of the topic). What passes is parsed and
normalised by the same domain code as the GraphQL inputs, so both paths store the same events.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import fastjsonschema
import orjson
from confluent_kafka import Message

from domain.commands import ChangeConsent, Command, RecordInteraction, UpdateTraits
from domain.errors import DomainError, InvalidInput
from domain.ports import SourceOffsets

# kind -> schema file. A message without `kind` is an interaction (what trackers send).
SCHEMA_FILES = {
    "interaction": "interaction.json",
    "traits": "traits.json",
    "grantConsent": "consent.json",
    "withdrawConsent": "consent.json",
}

# Dead-letter error codes (header `dlq.error.code`), besides the domain's own codes
# (BAD_USER_INPUT, ERASED, NOT_FOUND) for messages the domain refused.
TOO_LARGE = "TOO_LARGE"
NOT_JSON = "NOT_JSON"
SCHEMA_VIOLATION = "SCHEMA_VIOLATION"

# The domain's messages for these name the customer id: a header must not repeat it.
_PLAIN_MESSAGES = {"ERASED": "the customer was erased; commands for this id are refused"}


@dataclass(frozen=True)
class Rejection:
    """Why a message cannot be applied, ever: it goes to the dead-letter topic."""

    code: str
    message: str
    field: str | None = None

    @classmethod
    def of(cls, error: DomainError) -> Rejection:
        if isinstance(error, InvalidInput):
            return cls(error.code, error.message, error.field)
        return cls(error.code, _PLAIN_MESSAGES.get(error.code, str(error)))


def load_schemas() -> dict[str, dict[str, Any]]:
    """The published schemas, by file name."""
    folder = importlib.resources.files("adapters") / "schemas"
    return {
        name: json.loads((folder / name).read_text(encoding="utf-8"))
        for name in sorted(set(SCHEMA_FILES.values()))
    }


class MessageReader:
    """Turns a message value into a command, or a Rejection naming the field and the fix."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        compiled = {name: fastjsonschema.compile(s) for name, s in load_schemas().items()}
        self._validators: dict[str, Callable[[Any], Any]] = {
            kind: compiled[name] for kind, name in SCHEMA_FILES.items()
        }

    def read(self, value: bytes | None, now: datetime) -> Command | Rejection:
        if value is None or len(value) > self.max_bytes:
            size = 0 if value is None else len(value)
            return Rejection(
                TOO_LARGE if value else NOT_JSON,
                f"the message is {size} bytes; send one JSON object of at most "
                f"{self.max_bytes} bytes (PROFILES_INGEST_MAX_MESSAGE_BYTES)",
            )
        try:
            raw = orjson.loads(value)
        except orjson.JSONDecodeError as error:
            return Rejection(NOT_JSON, f"the message is not JSON ({error}); send a JSON object")
        if not isinstance(raw, dict):
            return Rejection(SCHEMA_VIOLATION, "the message must be a JSON object", "message")
        kind = raw.get("kind", "interaction")
        validate = self._validators.get(kind) if isinstance(kind, str) else None
        if validate is None:
            kinds = ", ".join(SCHEMA_FILES)
            return Rejection(
                SCHEMA_VIOLATION, f"{kind!r} is not a kind; use one of {kinds}", "message.kind"
            )
        try:
            validate(raw)
        except fastjsonschema.JsonSchemaValueException as error:
            field = str(error.name).replace("data", "message", 1)
            return Rejection(SCHEMA_VIOLATION, f"{field} {error.message.split(' ', 1)[-1]}", field)
        try:
            return _parse(kind, raw, now)
        except DomainError as error:
            return Rejection.of(error)


def _parse(kind: str, raw: Mapping[str, object], now: datetime) -> Command:
    if kind == "interaction":
        return RecordInteraction.parse(raw, now=now, field="message")
    if kind == "traits":
        return UpdateTraits.parse(raw, field="message")
    return ChangeConsent.parse(raw, granted=kind == "grantConsent", now=now, field="message")


def dead_letter_headers(
    rejection: Rejection, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """Headers added to the original message's own on the dead-letter topic."""
    headers = [
        ("dlq.error.code", rejection.code.encode()),
        ("dlq.error.message", rejection.message.encode()),
        ("dlq.original.topic", topic.encode()),
        ("dlq.original.partition", str(partition).encode()),
        ("dlq.original.offset", str(offset).encode()),
    ]
    if rejection.field:
        headers.append(("dlq.error.field", rejection.field.encode()))
    return headers


def batch_offsets(group: str, batch: Sequence[Message]) -> SourceOffsets:
    """Per partition, the batch's first offset and the next one to read after it."""
    spans: dict[tuple[str, int], list[int]] = {}
    for message in batch:
        topic, partition, offset = where(message)
        span = spans.setdefault((topic, partition), [offset, offset])
        span[0] = min(span[0], offset)
        span[1] = max(span[1], offset)
    entries = tuple((t, p, first, last + 1) for (t, p), (first, last) in sorted(spans.items()))
    return SourceOffsets(group, entries)


def where(message: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a consumed message, which always has all three."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset
