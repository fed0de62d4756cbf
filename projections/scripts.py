"""The Lua scripts that apply a page of encoded ops (`ops.encode`) to Redis atomically.

Both run the same op interpreter; they differ in what they check and move with the page:
`APPLY_BATCH` a read model's store position, `APPLY_STREAMS` a rebuild's cursor over
customer streams (`stream_build`). Either is refused as a whole when what it continues from
is not what is stored, and answers 0 for a page applied before (a replay after a crash).
"""

from __future__ import annotations

_OPS = """
local function fold(key, w, at, h)
  local v = tonumber(redis.call('HGET', key, 'v'))
  local ref = tonumber(redis.call('HGET', key, 'ref'))
  if not v then
    v, ref = w, at
  elseif at <= ref then
    v = v + w * 2 ^ (-(ref - at) / h)
  else
    v, ref = v * 2 ^ (-(at - ref) / h) + w, at
  end
  redis.call('HSET', key, 'v', string.format('%.17g', v), 'ref', string.format('%.17g', ref))
end
local a = cjson.decode(ARGV[4])
local i = 1
local n = #a
while i <= n do
  local op = a[i]
  local key = a[i + 1]
  if op == 'I' then
    redis.call('HINCRBY', key, a[i + 2], a[i + 3]); i = i + 4
  elseif op == 'S' then
    redis.call('HSET', key, a[i + 2], a[i + 3]); i = i + 4
  elseif op == 'D' then
    redis.call('HDEL', key, a[i + 2]); i = i + 3
  elseif op == 'MIN' or op == 'MAX' then
    local old = redis.call('HGET', key, a[i + 2])
    local new = a[i + 3]
    if (not old) or (op == 'MIN' and new < old) or (op == 'MAX' and new > old) then
      redis.call('HSET', key, a[i + 2], new)
    end
    i = i + 4
  elseif op == 'SN' then
    local old = redis.call('HGET', key, a[i + 4])
    if (not old) or a[i + 5] >= old then
      redis.call('HSET', key, a[i + 2], a[i + 3], a[i + 4], a[i + 5])
    end
    i = i + 6
  elseif op == 'Z' then
    redis.call('ZADD', key, a[i + 2], a[i + 3]); i = i + 4
  elseif op == 'T' then
    redis.call('ZREMRANGEBYRANK', key, 0, -(a[i + 2] + 1)); i = i + 3
  elseif op == 'X' then
    redis.call('DEL', key); i = i + 2
  elseif op == 'SET' then
    redis.call('SET', key, a[i + 2]); i = i + 3
  elseif op == 'SA' then
    redis.call('SADD', key, a[i + 2]); i = i + 3
  elseif op == 'SR' then
    redis.call('SREM', key, a[i + 2]); i = i + 3
  elseif op == 'ZA' then
    redis.call('ZADD', key, a[i + 2], a[i + 3]); i = i + 4
  elseif op == 'ZR' then
    redis.call('ZREM', key, a[i + 2]); i = i + 3
  elseif op == 'XA' then
    local n = a[i + 3]
    redis.call('XADD', key, 'MAXLEN', '~', a[i + 2], '*', unpack(a, i + 4, i + 3 + n))
    i = i + 4 + n
  elseif op == 'F' then
    local h, pending, now = a[i + 4], a[i + 5], a[i + 6]
    local due = redis.call('ZRANGEBYSCORE', pending, '-inf', now, 'WITHSCORES')
    for j = 1, #due, 2 do
      fold(key, tonumber(string.match(due[j], '|([^|]+)$')), tonumber(due[j + 1]), h)
    end
    if #due > 0 then redis.call('ZREMRANGEBYSCORE', pending, '-inf', now) end
    fold(key, a[i + 2], a[i + 3], h); i = i + 7
  else
    return redis.error_reply('unknown op ' .. tostring(op) .. ' at item ' .. i)
  end
end
"""

# ARGV: tracking key, position the batch continues from, its last position, the ops as JSON.
# Returns 1 when applied, 0 when this batch was applied before (a replay after a crash).
# Errors when the stored position is neither: another projector moved it, so resync.
APPLY_BATCH = (
    """
local track = ARGV[1]
local after = tonumber(ARGV[2])
local last = tonumber(ARGV[3])
local current = tonumber(redis.call('HGET', track, 'position') or '0')
-- after == last: changes due to time, not events (membership leaving a window): they apply
-- at the stored position and do not move it.
if after ~= last and current >= last then return 0 end
if current ~= after then
  return redis.error_reply('POSITION stored ' .. current .. ', batch continues from ' .. after)
end
"""
    + _OPS
    + """
if last ~= after then redis.call('HSET', track, 'position', last) end
return 1
"""
)

# ARGV: tracking key, cursor field, the cursor the page continues from, the ops as JSON, the
# cursor it ends at; also counts the page's events in `<field>:events` (progress that
# survives a restart). Cursors are "" (not started), "<stream id>/<version>" or "done".
APPLY_STREAMS = (
    """
local track, field, from, to = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
local current = redis.call('HGET', track, field) or ''
if current == to then return 0 end
if current ~= from then
  return redis.error_reply('CURSOR stored ' .. current .. ', page continues from ' .. from)
end
"""
    + _OPS
    + """
redis.call('HSET', track, field, to)
redis.call('HINCRBY', track, field .. ':events', ARGV[6])
return 1
"""
)

# ARGV: tracking key. Once every share of the pass (`streams` = "<last>/<shares>") is done,
# sets the position to the pass's last position and forgets the pass; 0 while one is not.
FINISH_STREAMS = """
local track = ARGV[1]
local chosen = redis.call('HGET', track, 'streams')
if not chosen then return 1 end
local last, count = string.match(chosen, '^(%d+)/(%d+)$')
count = tonumber(count)
for k = 0, count - 1 do
  if redis.call('HGET', track, 'streams:' .. k .. '/' .. count) ~= 'done' then return 0 end
end
redis.call('HSET', track, 'position', last)
for k = 0, count - 1 do
  local f = 'streams:' .. k .. '/' .. count
  redis.call('HDEL', track, f, f .. ':events')
end
redis.call('HDEL', track, 'streams')
return 1
"""
