"""The small vocabulary of view changes that read models emit and one Lua script applies.

Each change is a frozen value naming a Redis key and what to do to it. Keeping the vocabulary
closed means the whole batch, with its tracking position, is applied by one script call:
atomic, and refused as a whole if the position it continues from is not the stored one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson


@dataclass(frozen=True)
class Incr:
    key: str
    field: str
    by: int = 1


@dataclass(frozen=True)
class Put:
    key: str
    field: str
    value: str


@dataclass(frozen=True)
class Remove:
    key: str
    field: str


@dataclass(frozen=True)
class Least:
    """Keep the smaller of the stored and the given value (fixed-width strings compare in order)."""

    key: str
    field: str
    value: str


@dataclass(frozen=True)
class Greatest:
    key: str
    field: str
    value: str


@dataclass(frozen=True)
class PutIfNewer:
    """Set `field` unless `stamp_field` already holds a later stamp (event time wins)."""

    key: str
    field: str
    value: str
    stamp_field: str
    stamp: str


@dataclass(frozen=True)
class Keep:
    """Add to a sorted set and keep only the `keep` highest-scored members."""

    key: str
    score: float
    member: str
    keep: int


@dataclass(frozen=True)
class Drop:
    key: str


@dataclass(frozen=True)
class Fold:
    """Adds weight * 0.5 ** ((t - at) / half_life) to the decaying sum in hash `key` (fields
    v: the sum at ref, ref: epoch seconds), first folding in the entries of the sorted set
    `pending` ("id|weight", scored by epoch) that are due by `now`. Order-dependent: never
    merged by `compact`."""

    key: str
    weight: float
    at: float  # epoch seconds
    half_life: float  # seconds
    pending: str
    now: float


@dataclass(frozen=True)
class Store:
    """A whole string value (a JSON blob kept under its own key)."""

    key: str
    value: str


@dataclass(frozen=True)
class Member:
    """Adds `member` to a set, or (`score` given) to a sorted set; `present` False removes it."""

    key: str
    member: str
    present: bool = True
    score: float | None = None


@dataclass(frozen=True)
class Append:
    """XADD an entry to a stream capped near `maxlen` entries: a change log that a relay
    publishes, written in the same script call as the change itself. Never merged."""

    key: str
    fields: tuple[tuple[str, str], ...]
    maxlen: int


_Writes = Incr | Put | Remove | Least | Greatest | PutIfNewer | Keep | Drop | Store | Member
Op = _Writes | Fold | Append


def compact(ops: Iterable[Op]) -> list[Op]:
    """The same end state with fewer script calls: a batch often touches one field many times.

    Increments add up, the last put or removal of a field wins, least/greatest keep the
    extreme, put-if-newer keeps the latest stamp, and a drop discards what came before it on
    that key. Assumes what the read models guarantee: each field is written by one kind of op.
    """
    merged: dict[tuple[str, str, str], Op] = {}
    folds = 0
    # isinstance on these concrete classes, not `match` class patterns: at a few thousand ops
    # per batch the patterns cost more than the whole script run in Valkey.
    for op in ops:
        if isinstance(op, Incr):
            before = merged.get(("I", op.key, op.field))
            if isinstance(before, Incr):
                op = Incr(op.key, op.field, op.by + before.by)
            merged[("I", op.key, op.field)] = op
        elif isinstance(op, Put | Remove):
            merged.pop(("S", op.key, op.field), None)  # re-inserted last: it is the latest
            merged[("S", op.key, op.field)] = op
        elif isinstance(op, Least):
            before = merged.get(("MIN", op.key, op.field))
            if not isinstance(before, Least) or op.value < before.value:
                merged[("MIN", op.key, op.field)] = op
        elif isinstance(op, Greatest):
            before = merged.get(("MAX", op.key, op.field))
            if not isinstance(before, Greatest) or op.value > before.value:
                merged[("MAX", op.key, op.field)] = op
        elif isinstance(op, PutIfNewer):
            before = merged.get(("SN", op.key, op.field))
            if not isinstance(before, PutIfNewer) or op.stamp >= before.stamp:
                merged.pop(("SN", op.key, op.field), None)
                merged[("SN", op.key, op.field)] = op
        elif isinstance(op, Keep):
            merged[("Z", op.key, op.member)] = op
        elif isinstance(op, Store):
            merged.pop(("SET", op.key, ""), None)
            merged[("SET", op.key, "")] = op
        elif isinstance(op, Member):
            merged.pop(("M", op.key, op.member), None)
            merged[("M", op.key, op.member)] = op
        elif isinstance(op, Fold | Append):
            folds += 1
            merged[("F", op.key, str(folds))] = op  # each one kept, in order
        else:  # Drop: what came before on that key no longer matters
            for at in [at for at in merged if at[1] == op.key]:
                del merged[at]
            merged[("X", op.key, "")] = op
    return list(merged.values())


def encode(ops: Iterable[Op]) -> bytes:
    """Compacts ops and flattens them into one JSON array (opcode, then the op's fields).

    One argument instead of tens of thousands: building a command of that many arguments in
    Python cost more than running the whole script in Valkey. Sorted sets are trimmed once
    per key, after all of the batch's additions.
    """
    out: list[str | int | float] = []
    trims: dict[str, int] = {}
    # isinstance, the most frequent first: class patterns (`match`) cost a tenth of a rebuild
    # here, with each op tried against every case above its own.
    for op in compact(ops):
        if isinstance(op, Incr):
            out += ["I", op.key, op.field, op.by]
        elif isinstance(op, Least):
            out += ["MIN", op.key, op.field, op.value]
        elif isinstance(op, Keep):
            out += ["Z", op.key, op.score, op.member]
            trims[op.key] = op.keep
        elif isinstance(op, Fold):
            out += ["F", op.key, op.weight, op.at, op.half_life, op.pending, op.now]
        elif isinstance(op, Put):
            out += ["S", op.key, op.field, op.value]
        elif isinstance(op, Store):
            out += ["SET", op.key, op.value]
        elif isinstance(op, Member):
            if op.score is None:
                out += ["SA" if op.present else "SR", op.key, op.member]
            elif op.present:
                out += ["ZA", op.key, op.score, op.member]
            else:
                out += ["ZR", op.key, op.member]
        else:
            out += _rare(op)
    for key, keep in trims.items():
        out += ["T", key, keep]
    return orjson.dumps(out)


def _rare(op: Op) -> list[str | int | float]:
    match op:
        case Remove(key, field):
            return ["D", key, field]
        case Greatest(key, field, value):
            return ["MAX", key, field, value]
        case PutIfNewer(key, field, value, stamp_field, stamp):
            return ["SN", key, field, value, stamp_field, stamp]
        case Drop(key):
            return ["X", key]
        case Append(key, fields, maxlen):
            return ["XA", key, maxlen, 2 * len(fields), *(text for pair in fields for text in pair)]
    raise TypeError(f"no encoding for {op!r}")
