"""What a profile read costs Redis itself: the service's transaction beside the same read as
one Lua script, as the service read until the transaction replaced it.

Redis runs on one core and every read of every query process goes through it, so its CPU per
profile bounds `profiles` throughput whatever the service does. Measured from Redis's own
account (INFO cpu: used_cpu_user + used_cpu_sys, so it works on a configured server too) over
`calls` reads of each batch, one synchronous client, nothing else sent meanwhile. The
transaction is the service's own (`read_transaction`); the script reads the same keys and
returns each profile as one JSON text put together from its fields: kept here as the
measured reason for the choice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from adapters.hiredis_connections import EXEC, MULTI
from bench.bare_query import RECENT
from domain.ids import customer_uuid
from projections.profile import ProfileKeys
from projections.profile_queries import read_transaction
from projections.score import ScoreKeys
from projections.segment_keys import SegmentKeys
from projections.versions import FIRST, pointer_key

# KEYS: the version pointer, the in-service list, the segment definitions, then five keys per
# customer; ARGV[1]: how many recent items.
SCRIPT = """
local enc, sub, concat = cjson.encode, string.sub, table.concat
local function array(t) return #t == 0 and '[]' or enc(t) end
local out = {redis.call('HGETALL', KEYS[1])}
local serving = redis.call('GET', KEYS[2])
out[2] = serving
out[3] = serving and {} or redis.call('HGETALL', KEYS[3])
local recent = tonumber(ARGV[1])
for i = 4, #KEYS, 5 do
  local h = redis.call('HGETALL', KEYS[i])
  if #h == 0 then
    out[#out + 1] = ''
  else
    local head, t, n, c = {}, {}, {}, {}
    for j = 1, #h, 2 do
      local k, v = h[j], h[j + 1]
      local kind = sub(k, 1, 2)
      if kind == 't:' then t[#t + 1] = enc(sub(k, 3)) .. ':' .. v
      elseif kind == 'n:' then n[#n + 1] = enc(sub(k, 3)) .. ':' .. v
      elseif kind == 'c:' then c[#c + 1] = enc(sub(k, 3)) .. ':' .. v
      elseif k == 'cid' or k == 'first' then head[#head + 1] = enc(k) .. ':' .. enc(v)
      elseif k == 'v' then head[#head + 1] = '"v":' .. v
      end
    end
    local items = recent > 0 and redis.call('ZREVRANGE', KEYS[i + 1], 0, recent - 1) or {}
    local score = redis.call('HMGET', KEYS[i + 2], 'v', 'ref')
    head[#head + 1] = '"t":{' .. concat(t, ',') .. '}'
    head[#head + 1] = '"n":{' .. concat(n, ',') .. '}'
    head[#head + 1] = '"c":{' .. concat(c, ',') .. '}'
    head[#head + 1] = '"r":[' .. concat(items, ',') .. ']'
    head[#head + 1] = '"s":' .. (score[1] and enc(score[1]) or 'null')
    head[#head + 1] = '"ref":' .. (score[2] and enc(score[2]) or 'null')
    head[#head + 1] = '"p":' .. array(redis.call('ZRANGE', KEYS[i + 3], 0, -1, 'WITHSCORES'))
    head[#head + 1] = '"m":' .. array(redis.call('SMEMBERS', KEYS[i + 4]))
    out[#out + 1] = '{' .. concat(head, ',') .. '}'
  end
end
return out
"""


def _cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _per_profile(
    client: redis.Redis, read: Callable[[Sequence[str]], Any], batches: list[list[str]], calls: int
) -> dict[str, float]:
    read(batches[0])  # warm: the script loaded, the keys' pages in memory
    cpu, started = _cpu(client), time.perf_counter()
    for n in range(calls):
        read(batches[n % len(batches)])
    wall = time.perf_counter() - started
    profiles = sum(len(batches[n % len(batches)]) for n in range(calls))
    return {
        "redis_cpu_us_per_profile": (_cpu(client) - cpu) / profiles * 1e6,
        "wall_ms_per_read": wall / calls * 1_000,
    }


def _script_keys(namespace: str, ids: Sequence[str]) -> list[str]:
    profiles, scores, segments = (
        ProfileKeys(namespace, FIRST),
        ScoreKeys(namespace, FIRST),
        SegmentKeys(namespace, FIRST),
    )
    keys = [pointer_key(namespace), segments.in_service, segments.definitions]
    for uid in map(customer_uuid, ids):
        keys += (
            profiles.profile(uid),
            profiles.recent(uid),
            scores.score(uid),
            scores.pending(uid),
            segments.of(uid),
        )
    return keys


def measure(
    redis_url: str, namespace: str, batches: list[list[str]], calls: int
) -> dict[str, dict[str, float]]:
    """{"transaction": ..., "script": ...}: Redis CPU per profile and wall time per read of
    each (the bench's stack serves the first versions: no rebuild ran)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    script = client.register_script(SCRIPT)
    connection: Any = client.connection_pool.get_connection()

    def by_transaction(ids: Sequence[str]) -> Any:
        packed, count = read_transaction(namespace, (FIRST, FIRST, FIRST), ids, RECENT)
        connection.send_packed_command([MULTI + packed + EXEC])
        return [connection.read_response() for _ in range(count + 2)][-1]

    def by_script(ids: Sequence[str]) -> Any:
        return script(_script_keys(namespace, ids), [RECENT])

    try:
        return {
            "transaction": _per_profile(client, by_transaction, batches, calls),
            "script": _per_profile(client, by_script, batches, calls),
        }
    finally:
        client.connection_pool.release(connection)
        client.close()
