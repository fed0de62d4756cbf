"""The Kafka ingest shares the commands' validation: what GraphQL refuses is dead-lettered."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from adapters.ingest_messages import MessageReader, Rejection

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
INTERACTION = {
    "eventId": "e-1",
    "customerId": "c-1",
    "type": "page_view",
    "occurredAt": "2026-05-01T11:00:00Z",
}


TRAITS = {"kind": "traits", "customerId": "c-1", "traits": {"firstName": "A\u0000da"}}


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({**INTERACTION, "eventId": "e-\u0000"}, "message.eventId"),
        ({**INTERACTION, "customerId": "c-\u0000"}, "message.customerId"),
        ({**INTERACTION, "properties": {"category": "sh\u0000es"}}, "message.properties.category"),
        (TRAITS, "message.traits.firstName"),
    ],
)
def test_a_nul_character_is_dead_lettered_naming_the_field(
    message: dict[str, object], field: str
) -> None:
    rejection = MessageReader(65_536).read(json.dumps(message).encode(), NOW)
    assert isinstance(rejection, Rejection)
    assert (rejection.code, rejection.field) == ("BAD_USER_INPUT", field)
    assert "NUL" in rejection.message
