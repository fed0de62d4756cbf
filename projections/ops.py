"""The small vocabulary of view changes that read models emit and one Lua script applies.

Each change is a frozen value naming a Redis key and what to do to it. Keeping the vocabulary
closed means the whole batch, with its tracking position, is applied by one script call:
atomic, and refused as a whole if the position it continues from is not the stored one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


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


Op = Incr | Put | Remove | Least | Greatest | PutIfNewer | Keep | Drop


def encode(ops: Iterable[Op]) -> list[str | int | float]:
    """Flattens ops into script arguments: opcode, then the op's own fields in order."""
    out: list[str | int | float] = []
    for op in ops:
        match op:
            case Incr(key, field, by):
                out += ["I", key, field, by]
            case Put(key, field, value):
                out += ["S", key, field, value]
            case Remove(key, field):
                out += ["D", key, field]
            case Least(key, field, value):
                out += ["MIN", key, field, value]
            case Greatest(key, field, value):
                out += ["MAX", key, field, value]
            case PutIfNewer(key, field, value, stamp_field, stamp):
                out += ["SN", key, field, value, stamp_field, stamp]
            case Keep(key, score, member, keep):
                out += ["Z", key, score, member, keep]
            case Drop(key):
                out += ["X", key]
    return out


# ARGV: tracking key, position the batch continues from, its last position, then the ops.
# Returns 1 when applied, 0 when this batch was applied before (a replay after a crash).
# Errors when the stored position is neither: another projector moved it, so resync.
APPLY_BATCH = """
local track = ARGV[1]
local after = tonumber(ARGV[2])
local last = tonumber(ARGV[3])
local current = tonumber(redis.call('HGET', track, 'position') or '0')
if current >= last then return 0 end
if current ~= after then
  return redis.error_reply('POSITION stored ' .. current .. ', batch continues from ' .. after)
end
local i = 4
local n = #ARGV
while i <= n do
  local op = ARGV[i]
  local key = ARGV[i + 1]
  if op == 'I' then
    redis.call('HINCRBY', key, ARGV[i + 2], ARGV[i + 3]); i = i + 4
  elseif op == 'S' then
    redis.call('HSET', key, ARGV[i + 2], ARGV[i + 3]); i = i + 4
  elseif op == 'D' then
    redis.call('HDEL', key, ARGV[i + 2]); i = i + 3
  elseif op == 'MIN' or op == 'MAX' then
    local old = redis.call('HGET', key, ARGV[i + 2])
    local new = ARGV[i + 3]
    if (not old) or (op == 'MIN' and new < old) or (op == 'MAX' and new > old) then
      redis.call('HSET', key, ARGV[i + 2], new)
    end
    i = i + 4
  elseif op == 'SN' then
    local old = redis.call('HGET', key, ARGV[i + 4])
    if (not old) or ARGV[i + 5] >= old then
      redis.call('HSET', key, ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5])
    end
    i = i + 6
  elseif op == 'Z' then
    redis.call('ZADD', key, ARGV[i + 2], ARGV[i + 3])
    redis.call('ZREMRANGEBYRANK', key, 0, -(tonumber(ARGV[i + 4]) + 1)); i = i + 5
  elseif op == 'X' then
    redis.call('DEL', key); i = i + 2
  else
    return redis.error_reply('unknown op ' .. tostring(op) .. ' at argument ' .. i)
  end
end
redis.call('HSET', track, 'position', last)
return 1
"""
