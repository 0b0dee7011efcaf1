"""Lua scripts: the rules of :mod:`sluice.limits.window` on Redis sorted sets and hashes.

Per rate key K: the request log in slices: ``K:r`` zset (slice id → the slice's end, which no
member is later than; never rewritten), ``K:rw`` hash (closed slice id → requests) and ``K:rs``
hash (``n`` requests in the window; the open slice: ``m`` id, ``s`` start, ``c`` requests), so
joining a slice is one small HSET; a member with no weight counts 1 (the log before slices). ``K:t`` zset
(token log: id → time) with ``K:tw`` hash (id → tokens, ``_sum``); ``K:c`` zset (concurrency
leases: id → deadline).
Per budget key B: ``B`` hash (``spent``, ``reserved``, ``r:<id>`` → reserved nano-dollars) and
``B:l`` zset (reservation leases: id → deadline).

Budget keys get a TTL (seconds, computed by the caller from the period end plus a grace period)
rather than an absolute expiry, so a caller's clock never has to agree with the server's.
Integers are formatted with ``%d`` before they reach Redis so large values never turn into
exponent notation. Times are seconds (floats); ARGV ``now`` < 0 means "use the Redis server clock"
so replicas with skewed clocks share one timeline. Lua returns integers only: durations are ms.
"""

from __future__ import annotations

from typing import Final

_COMMON: Final = r"""
local function int(x) return string.format('%d', x) end
local function clock(arg)
  local now = tonumber(arg)
  if now < 0 then
    local t = redis.call('TIME')
    now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  end
  return now
end
local function ts(x) return string.format('%.6f', x) end
-- drop expired budget reservations (deadline <= now), return spent, reserved
local function purge_budget(bk, lk, now)
  while true do
    local old = redis.call('ZRANGEBYSCORE', lk, '-inf', ts(now), 'LIMIT', 0, 500)
    if #old == 0 then break end
    local freed = 0
    for i = 1, #old do
      local f = 'r:' .. old[i]
      freed = freed + (tonumber(redis.call('HGET', bk, f)) or 0)
      redis.call('HDEL', bk, f)
    end
    redis.call('ZREM', lk, unpack(old))
    if freed ~= 0 then redis.call('HINCRBY', bk, 'reserved', int(-freed)) end
  end
  local v = redis.call('HMGET', bk, 'spent', 'reserved')
  return tonumber(v[1]) or 0, tonumber(v[2]) or 0
end
"""

ADMIT: Final = (
    _COMMON
    + r"""
local now = clock(ARGV[1])
local id = ARGV[2]
local nrate, nbud = tonumber(ARGV[3]), tonumber(ARGV[4])
local tokens, cost = tonumber(ARGV[5]), tonumber(ARGV[6])
local lease, window = tonumber(ARGV[7]), tonumber(ARGV[8])
local slice = tonumber(ARGV[9])
local horizon = ts(now - window)

-- the token log: drops what left the window, returns the tokens still in it
local function purge_tokens(tk, tw)
  while true do
    local old = redis.call('ZRANGEBYSCORE', tk, '-inf', horizon, 'LIMIT', 0, 500)
    if #old == 0 then break end
    local ws = redis.call('HMGET', tw, unpack(old))
    local freed = 0
    for i = 1, #ws do freed = freed + (tonumber(ws[i]) or 0) end
    redis.call('HDEL', tw, unpack(old))
    redis.call('ZREM', tk, unpack(old))
    if freed ~= 0 then redis.call('HINCRBY', tw, '_sum', int(-freed)) end
  end
  return tonumber(redis.call('HGET', tw, '_sum')) or 0
end

-- seconds until excess tokens have left the window
local function token_wait(tk, tw, excess)
  local freed = 0
  local e = redis.call('ZRANGE', tk, 0, 999, 'WITHSCORES')
  for i = 1, #e, 2 do
    freed = freed + (tonumber(redis.call('HGET', tw, e[i])) or 0)
    if freed >= excess then return tonumber(e[i + 1]) + window - now end
  end
  return window
end

-- the request log: a member's weight is its closed count, the open slice's count, or 1
local function req_weight(w, member, open, openc)
  return tonumber(w) or (member == open and tonumber(openc)) or 1
end

local function purge_requests(rk, rw, open, openc)
  local freed, open_left = 0, false
  while true do
    local old = redis.call('ZRANGEBYSCORE', rk, '-inf', horizon, 'LIMIT', 0, 500)
    if #old == 0 then break end
    local ws = redis.call('HMGET', rw, unpack(old))
    for i = 1, #old do
      freed = freed + req_weight(ws[i], old[i], open, openc)
      if old[i] == open then open_left = true end
    end
    redis.call('HDEL', rw, unpack(old))
    redis.call('ZREM', rk, unpack(old))
  end
  return freed, open_left
end

local function request_wait(rk, rw, open, openc, excess)
  local freed = 0
  local e = redis.call('ZRANGE', rk, 0, 999, 'WITHSCORES')
  for i = 1, #e, 2 do
    freed = freed + req_weight(redis.call('HGET', rw, e[i]), e[i], open, openc)
    if freed >= excess then return tonumber(e[i + 1]) + window - now end
  end
  return window
end

local function refuse(i, kind, wait, hard)
  return {0, i, kind, math.max(0, math.ceil(wait * 1000)), hard}
end

local rpm_seen = {}  -- per level: what the check read, for the admission to reuse
local a = 10
for i = 0, nrate - 1 do
  local k = i * 6
  local rpm, tpm, conc = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  if rpm > 0 then
    -- the common case is 3 calls in all: HMGET and ZRANGE here, HSET below
    local rk, rw, rs = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
    local st = redis.call('HMGET', rs, 'n', 'm', 's', 'c')
    local n = tonumber(st[1]) or redis.call('ZCARD', rk)  -- ZCARD: new, or a member per request
    local oldest = redis.call('ZRANGE', rk, 0, 0, 'WITHSCORES')
    if oldest[2] and tonumber(oldest[2]) <= tonumber(horizon) then
      local freed, open_left = purge_requests(rk, rw, st[2], st[4])
      n = math.max(0, n - freed)
      if open_left then st[2] = false end
      redis.call('HSET', rs, 'n', n)
      oldest = redis.call('ZRANGE', rk, 0, 0, 'WITHSCORES')
    end
    if n + 1 > rpm then return refuse(i, 1, request_wait(rk, rw, st[2], st[4], n + 1 - rpm), 0) end
    rpm_seen[i] = {st, n, oldest}
  end
  if tpm > 0 then
    if tokens > tpm then return refuse(i, 2, window, 1) end
    local sum = purge_tokens(KEYS[k + 4], KEYS[k + 5])
    if sum + tokens > tpm then
      return refuse(i, 2, token_wait(KEYS[k + 4], KEYS[k + 5], sum + tokens - tpm), 0)
    end
  end
  if conc > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[k + 6], '-inf', ts(now))
    if redis.call('ZCARD', KEYS[k + 6]) >= conc then return refuse(i, 3, 1, 0) end
  end
end
local b0 = nrate * 6
local bargs = a
for j = 0, nbud - 1 do
  local limit = tonumber(ARGV[a])
  a = a + 2
  local spent, reserved = purge_budget(KEYS[b0 + j * 2 + 1], KEYS[b0 + j * 2 + 2], now)
  if spent >= limit or spent + reserved + cost > limit then
    local hard = 0
    if spent >= limit or spent + cost > limit then hard = 1 end
    return refuse(j, 4, 1, hard)
  end
end

local out = {1}
a = 10
for i = 0, nrate - 1 do
  local k = i * 6
  local rpm, tpm, conc = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  local rl, rr, tl, tr = -1, 0, -1, 0
  if rpm > 0 then
    -- Join the open slice, or close it (its count goes to K:rw) and open one, dated at its end.
    -- A slice opened less than a slice ago is still in the window.
    local rk, rw, rs = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
    local st, n, oldest = rpm_seen[i][1], rpm_seen[i][2], rpm_seen[i][3]
    local open, since = st[2], tonumber(st[3])
    local first
    if open and since and math.abs(now - since) < slice then
      redis.call('HSET', rs, 'n', n + 1, 'c', (tonumber(st[4]) or 0) + 1)
      first = since + slice
    else
      if open then redis.call('HSET', rw, open, tonumber(st[4]) or 0) end
      open, first = id, now + slice
      redis.call('ZADD', rk, ts(first), id)
      redis.call('HSET', rs, 'n', n + 1, 'm', id, 's', ts(now), 'c', 1)
      -- expiry moves with each new slice, which leaves the window before the keys expire
      for _, key in ipairs({rk, rw, rs}) do
        redis.call('PEXPIRE', key, int((window + slice) * 1000 + 1000))
      end
    end
    rl = rpm - (n + 1)
    if oldest[1] and oldest[1] ~= open then first = tonumber(oldest[2]) end
    rr = math.ceil((first + window - now) * 1000)
  end
  if tpm > 0 then
    redis.call('ZADD', KEYS[k + 4], ts(now), id)
    redis.call('HSET', KEYS[k + 5], id, int(tokens))
    local sum = redis.call('HINCRBY', KEYS[k + 5], '_sum', int(tokens))
    redis.call('PEXPIRE', KEYS[k + 4], int(window * 1000 + 1000))
    redis.call('PEXPIRE', KEYS[k + 5], int(window * 1000 + 1000))
    tl = tpm - sum
    local e = redis.call('ZRANGE', KEYS[k + 4], 0, 0, 'WITHSCORES')
    tr = math.ceil((tonumber(e[2]) + window - now) * 1000)
  end
  if conc > 0 then
    redis.call('ZADD', KEYS[k + 6], ts(now + lease), id)
    redis.call('PEXPIRE', KEYS[k + 6], int(lease * 1000 + 1000))
  end
  out[#out + 1] = rl
  out[#out + 1] = rr
  out[#out + 1] = tl
  out[#out + 1] = tr
end
a = bargs
for j = 0, nbud - 1 do
  local bk, lk = KEYS[b0 + j * 2 + 1], KEYS[b0 + j * 2 + 2]
  local ttl = math.max(tonumber(ARGV[a + 1]), lease + 1)
  a = a + 2
  redis.call('HINCRBY', bk, 'reserved', int(cost))
  redis.call('HSET', bk, 'r:' .. id, int(cost))
  redis.call('ZADD', lk, ts(now + lease), id)
  redis.call('EXPIRE', bk, int(ttl))
  redis.call('EXPIRE', lk, int(ttl))
end
return out
"""
)

SETTLE: Final = r"""
local function int(x) return string.format('%d', x) end
local id = ARGV[1]
local nrate, nbud = tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, cost = tonumber(ARGV[4]), tonumber(ARGV[5])
local a = 6
for i = 0, nrate - 1 do
  local k = i * 6
  if ARGV[a] == '1' then
    local w = redis.call('HGET', KEYS[k + 5], id)
    if w and tonumber(w) ~= tokens then
      redis.call('HSET', KEYS[k + 5], id, int(tokens))
      redis.call('HINCRBY', KEYS[k + 5], '_sum', int(tokens - tonumber(w)))
    end
  end
  if ARGV[a + 1] == '1' then redis.call('ZREM', KEYS[k + 6], id) end
  a = a + 2
end
local out = {}
local b0 = nrate * 6
for j = 0, nbud - 1 do
  local bk, lk = KEYS[b0 + j * 2 + 1], KEYS[b0 + j * 2 + 2]
  local r = redis.call('HGET', bk, 'r:' .. id)
  if r then
    redis.call('HDEL', bk, 'r:' .. id)
    redis.call('HINCRBY', bk, 'reserved', int(-tonumber(r)))
    redis.call('ZREM', lk, id)
  end
  local after = redis.call('HINCRBY', bk, 'spent', int(cost))
  if redis.call('TTL', bk) < 0 then redis.call('EXPIRE', bk, ARGV[a]) end
  a = a + 1
  out[#out + 1] = after - cost
  out[#out + 1] = after
end
return out
"""

EXTEND: Final = (
    _COMMON
    + r"""
local now = clock(ARGV[1])
local id, extra, nbud = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
for j = 0, nbud - 1 do
  local bk, lk = KEYS[j * 2 + 1], KEYS[j * 2 + 2]
  local limit = tonumber(ARGV[5 + j])
  local spent, reserved = purge_budget(bk, lk, now)
  if redis.call('HEXISTS', bk, 'r:' .. id) == 0 then return 0 end
  if spent >= limit or spent + reserved + extra > limit then return 0 end
end
for j = 0, nbud - 1 do
  local bk = KEYS[j * 2 + 1]
  redis.call('HINCRBY', bk, 'reserved', int(extra))
  redis.call('HINCRBY', bk, 'r:' .. id, int(extra))
end
return 1
"""
)

USAGE: Final = (
    _COMMON
    + r"""
local now = clock(ARGV[1])
local out = {}
for j = 0, #KEYS / 2 - 1 do
  local spent, reserved = purge_budget(KEYS[j * 2 + 1], KEYS[j * 2 + 2], now)
  out[#out + 1] = spent
  out[#out + 1] = reserved
end
return out
"""
)

IN_FLIGHT: Final = r"""
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local out = {}
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', string.format('%.6f', now))
  out[i] = redis.call('ZCARD', KEYS[i])
end
return out
"""
