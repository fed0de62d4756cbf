"""Event state as JSON bytes, read back by the library's JSONTranscoder exactly as before.

The transcoder encodes with the stdlib encoder and a Python `default` hook for datetimes; with
two encodes per sealed event that was the largest single cost of the write path (~9 us of an
interaction's ~25 us in the mapper). orjson writes the same JSON several times faster, but it
also writes some types natively that the transcoder would tag or refuse (UUID, Enum, date,
NaN as null...), which would then read back as something else. So a value takes the fast path
only when it is made of plain JSON types and datetimes (what normalised commands produce);
anything else, and anything orjson refuses (an int beyond 64 bits, a lone surrogate), is
encoded by the transcoder itself, as before.

The bytes are the transcoder's except for floats with an exponent (orjson writes 1e16 where
the stdlib writes 1e+16), which decode to the same value.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, cast

import orjson
from eventsourcing.persistence import JSONTranscoder, Transcoder

# Datetimes (and any date or time) reach `default`, so they are tagged as the transcoder tags
# them; str/int/dict/list subclasses too, but those never pass `_plain` anyway.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS


class EventJSON:
    """`encode` with the transcoder's output format; the transcoder decodes what it writes."""

    def __init__(self, transcoder: Transcoder) -> None:
        self._fallback = transcoder.encode
        datetime_coding = (
            transcoder.types.get(datetime) if isinstance(transcoder, JSONTranscoder) else None
        )
        # Without the library's JSON transcoder (or with datetimes coded some other way) the
        # format is not ours to reproduce: everything goes through the transcoder.
        self._enabled = datetime_coding is not None and datetime_coding.name == "datetime_iso"
        self._datetime_tag = "" if datetime_coding is None else datetime_coding.name
        # See `share`.
        self._shared: tuple[datetime | None, dict[str, str]] = (None, {})

    def encode(self, value: dict[str, Any]) -> bytes:
        if self._enabled and _plain(value):
            try:
                return orjson.dumps(value, default=self._tag, option=_OPTIONS)
            except orjson.JSONEncodeError:
                pass  # e.g. an int beyond 64 bits: the stdlib encoder writes it
        return self._fallback(value)

    def _tag(self, value: object) -> dict[str, str]:
        shared, tagged = self._shared
        if value is shared:
            return tagged
        if type(value) is not datetime:  # _plain admits no other type that gets here
            raise TypeError(f"{type(value).__name__} is not plain JSON")
        return {"_type_": self._datetime_tag, "_data_": value.isoformat()}

    def share(self, value: datetime) -> None:
        """Names a datetime the next encodes will meet again and again (the timestamp that a
        transaction's events share), so it is tagged once, not once per event."""
        if self._shared[0] is not value:
            self._shared = (value, {"_type_": self._datetime_tag, "_data_": value.isoformat()})


def _plain(value: object) -> bool:
    """Only JSON types (finite floats, str keys) and datetimes, all of their exact types."""
    kind = type(value)
    if kind is str or value is None or kind is int or kind is bool or kind is datetime:
        return True
    if kind is float:
        return math.isfinite(cast(float, value))
    if kind is dict:
        # Scalars are checked inline: a call per value cost more than the encoding itself.
        for key, item in cast(dict[object, object], value).items():
            if type(key) is not str:
                return False
            of = type(item)
            if not (of is str or item is None or of is int or of is bool) and not _plain(item):
                return False
        return True
    if kind is list or kind is tuple:
        return all(_plain(item) for item in cast(list[object], value))
    return False
