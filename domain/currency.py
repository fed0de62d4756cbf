"""The currency of an interaction, read from its properties (pure).

One rule serves both the events recorded now and the upcasting of events recorded before
`InteractionRecorded` had a `currency` field, so a replay gives old and new events the same
answer for the same properties.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Shape only, not the ISO 4217 list: the upcaster re-runs this on every read of an old event,
# forever, so its answer must not change when a list of assigned codes is updated.
_CODE = re.compile(r"[A-Za-z]{3}")


def currency_code(properties: Mapping[str, Any] | None) -> str | None:
    """`properties["currency"]` as an upper-case three-letter code, or None when it is missing
    or not three ASCII letters (None properties: an erased customer's, or none sent)."""
    if not properties:
        return None
    value = properties.get("currency")
    if isinstance(value, str) and _CODE.fullmatch(value):
        return value.upper()
    return None
