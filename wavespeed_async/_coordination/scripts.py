"""The Lua scripts of the Redis coordinator: each decision is one atomic script.

Times come from Redis ``TIME`` (milliseconds, or seconds for the bucket), so processes on
machines with skewed clocks agree. Numbers go back as strings: Redis truncates Lua numbers.
Every key of a namespace carries the hash tag ``{namespace}``, so that on a Redis Cluster they
all live in one hash slot and a script may touch any of them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCRIPTS", "register"]

_NOW_MS = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

#: Every script but EPOCH starts so: KEYS[1] is the namespace's epoch marker and
#: ARGV[1] the epoch the caller knows; both are taken off. When the marker is gone or another
#: one, Redis lost its data since the caller last looked: the script changes nothing and
#: answers ``{'epoch'}``, and the caller recovers (see ``EPOCH``) before it asks again.
_CHECK_EPOCH = """
local EPOCH_KEY, KNOWN_EPOCH = table.remove(KEYS, 1), table.remove(ARGV, 1)
local epoch = redis.call('HMGET', EPOCH_KEY, 'id', 'lost_since', 'lost_at', 'recovering_until',
                         'lost_until')
if epoch[1] ~= KNOWN_EPOCH then return {'epoch'} end
"""

#: KEYS[1]: the epoch marker. ARGV: the epoch id the caller knew ('' for none), when that
#: epoch started (ms), a fresh id, the recovery window (ms), how long a loss is remembered
#: (ms). Returns {id, started ms, lost since ms or '', lost at ms or '', recovering until ms}.
#: A marker that is missing, or not the one the caller knew, means the data was lost: the
#: marker then says since when (the oldest epoch any caller knew) and keeps new slots closed
#: for the recovery window, while every live process registers its running tasks again.
EPOCH = (
    _NOW_MS
    + """
local known, known_started = ARGV[1], tonumber(ARGV[2])
local e = redis.call('HMGET', KEYS[1], 'id', 'started', 'lost_since', 'lost_at',
                     'recovering_until')
if not e[1] then
  redis.call('HSET', KEYS[1], 'id', ARGV[3], 'started', now_ms)
  e = {ARGV[3], now_ms, false, false, false}
end
if known ~= '' and known ~= e[1] then
  local since = math.min(tonumber(e[3]) or known_started, known_started)
  local recovering = math.max(tonumber(e[5]) or 0, now_ms + tonumber(ARGV[4]))
  local lost_at = tonumber(e[4]) or now_ms
  redis.call('HSET', KEYS[1], 'lost_since', since, 'lost_at', lost_at,
             'recovering_until', recovering, 'lost_until', now_ms + tonumber(ARGV[5]))
  e = {e[1], e[2], since, lost_at, recovering}
end
local function s(x) if not x then return '' end return tostring(x) end
return {e[1], s(e[2]), s(e[3]), s(e[4]), s(e[5])}
"""
)

#: The token bucket with AIMD, the twin of ``_limits.SubmitRate`` (a fixed one-minute window
#: stands in for its sliding count of recent submits). ARGV: operation (reserve, limited,
#: accepted), ceiling ("" for none), the minimum rate, the decrease cooldown in seconds.
RATE = (
    _CHECK_EPOCH
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local op, ceiling = ARGV[1], tonumber(ARGV[2])
local min_rate, cooldown = tonumber(ARGV[3]), tonumber(ARGV[4])
local s = redis.call('HMGET', KEYS[1], 'rate', 'tokens', 'updated', 'last_decrease', 'lift_at',
                     'window_start', 'window_count')
local rate, tokens, updated = tonumber(s[1]), tonumber(s[2]), tonumber(s[3])
local last_decrease, lift_at = tonumber(s[4]) or -1e18, tonumber(s[5])
local window_start, window_count = tonumber(s[6]) or now, tonumber(s[7]) or 0
if updated == nil then  -- a new bucket: a minute's worth of submits; none after a loss
  rate, tokens, updated = ceiling, ceiling or 0, now
  if epoch[3] and now * 1000 - tonumber(epoch[3]) < 60000 then tokens = 0 end
end
if ceiling and rate and rate > ceiling then rate = ceiling end
if rate then tokens = math.min(rate, tokens + (now - updated) * rate / 60) end
updated = now
local delay = 0
if op == 'reserve' then
  if now - window_start >= 60 then window_start, window_count = now, 0 end
  window_count = window_count + 1
  if rate then
    tokens = tokens - 1
    if tokens < 0 then delay = -tokens * 60 / rate end
  end
elseif op == 'limited' then
  if now - last_decrease >= cooldown then
    last_decrease = now
    rate = math.max(math.min(min_rate, ceiling or min_rate), (rate or window_count) / 2)
    if not ceiling then lift_at = rate * 4 end
    tokens = math.min(tokens, 1)
  end
elseif op == 'accepted' and rate then
  rate = rate + 1
  if ceiling and rate >= ceiling then rate = ceiling
  elseif lift_at and rate >= lift_at then rate, lift_at = nil, nil end
end
local function str(x) if x == nil then return '' end return string.format('%.17g', x) end
redis.call('HSET', KEYS[1], 'rate', str(rate), 'tokens', str(tokens), 'updated', str(updated),
           'last_decrease', str(last_decrease), 'lift_at', str(lift_at),
           'window_start', str(window_start), 'window_count', str(window_count))
redis.call('EXPIRE', KEYS[1], 86400)
return str(delay)
"""
)

# Slots: KEYS = the lease ZSET (lease -> expiry ms), task -> lease and lease -> task hashes.
_PURGE_EXPIRED = """
for _, lease in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms)) do
  local task = redis.call('HGET', KEYS[3], lease)
  if task then redis.call('HDEL', KEYS[2], task); redis.call('HDEL', KEYS[3], lease) end
  redis.call('ZREM', KEYS[1], lease)
end
"""

#: ARGV: lease id, limit, lease ms. 1 when the lease was taken; none while recovering.
ACQUIRE = (
    _CHECK_EPOCH
    + _NOW_MS
    + _PURGE_EXPIRED
    + """
if epoch[4] and tonumber(epoch[4]) > now_ms then return 0 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[3]), ARGV[1])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], 86400) end
return 1
"""
)

#: ARGV: lease id, task id.
BIND = (
    _CHECK_EPOCH
    + """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return 1
"""
)

#: ARGV: lease id, task id, lease ms. A running task this process adopted (or resumed) holds
#: a slot, over the limit if need be (it runs already): the lease of its slot if one is live,
#: else a new one bound to it.
HOLD = (
    _CHECK_EPOCH
    + _NOW_MS
    + """
local held = redis.call('HGET', KEYS[2], ARGV[2])
if held and redis.call('ZSCORE', KEYS[1], held) then
  redis.call('ZADD', KEYS[1], 'XX', 'GT', now_ms + tonumber(ARGV[3]), held)
  return held
end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], 86400) end
return ARGV[1]
"""
)

#: ARGV: lease ms, then pairs of lease id and task id ('' when unbound). After a loss: this
#: process's running tasks hold their slots again (the limit counts them).
REREGISTER = (
    _CHECK_EPOCH
    + _NOW_MS
    + """
for i = 2, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[1]), ARGV[i])
  if ARGV[i + 1] ~= '' then
    redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i])
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  end
end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], 86400) end
return 1
"""
)

#: ARGV: lease id or task id, the channel that wakes waiters.
RELEASE = (
    _CHECK_EPOCH
    + """
local lease = redis.call('HGET', KEYS[2], ARGV[1]) or ARGV[1]
local task = redis.call('HGET', KEYS[3], lease)
if task then redis.call('HDEL', KEYS[2], task); redis.call('HDEL', KEYS[3], lease) end
local removed = redis.call('ZREM', KEYS[1], lease)
if removed == 1 then redis.call('PUBLISH', ARGV[2], '1') end
return removed
"""
)

#: ARGV: lease ms, then this process's leases. Returns the leases no longer held.
RENEW = (
    _CHECK_EPOCH
    + _NOW_MS
    + """
local gone = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', now_ms + tonumber(ARGV[1]), ARGV[i])
  else
    table.insert(gone, ARGV[i])
  end
end
return gone
"""
)

#: KEYS[1]: the seen marker. ARGV: ttl ms. 1 the first time.
FIRST = (
    _CHECK_EPOCH
    + """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 1 end
return 0
"""
)

#: ARGV: channel, body.
PUBLISH = _CHECK_EPOCH + "return redis.call('PUBLISH', ARGV[1], ARGV[2])"

# The ledger: KEYS[1] is the record's HASH (fingerprint, model, payload, state, claimant,
# lease_until ms, sent_at ms, prediction_id, orphaned; for an uncertain key proof_after ms
# and reason). An "uncertain" key is claimed (owned, for one history check) by one caller at
# a time: whoever finds no live claimant on it.

#: ARGV: fingerprint, model, payload JSON, claimant token, lease ms, ttl s.
#: Returns {1 owned or 0, now ms, HGETALL} or {'conflict'}. Taking over a "submitting"
#: record whose lease ran out happens here, atomically: one caller gets it, orphaned=1. A key
#: unknown in the days after Redis lost its data may have been submitted before the loss: its
#: claim is an orphan from the start (sent at the start of the lost epoch, its task created
#: before the loss was seen: proof_after), so the owner reconciles it through the history
#: before it submits.
CLAIM = (
    _CHECK_EPOCH
    + _NOW_MS
    + """
local r = redis.call('HMGET', KEYS[1], 'fingerprint', 'state', 'claimant', 'lease_until')
local owned = 0
if not r[1] then
  local sent_at, orphaned = now_ms, '0'
  if epoch[2] and tonumber(epoch[5]) > now_ms then sent_at, orphaned = epoch[2], '1' end
  redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'model', ARGV[2], 'payload', ARGV[3],
             'state', 'submitting', 'claimant', ARGV[4],
             'lease_until', now_ms + tonumber(ARGV[5]), 'sent_at', sent_at,
             'orphaned', orphaned)
  -- A task of the lost epoch was created before the loss was seen: proof looks past that.
  if orphaned == '1' then redis.call('HSET', KEYS[1], 'proof_after', epoch[3]) end
  redis.call('EXPIRE', KEYS[1], ARGV[6])
  owned = 1
elseif r[1] ~= ARGV[1] then
  return {'conflict'}
elseif (r[2] == 'submitting' or r[2] == 'uncertain') and r[3] == ARGV[4] then
  owned = 1  -- this very claim, retried after a lost answer
elseif r[2] == 'submitting' and tonumber(r[4]) < now_ms then
  redis.call('HSET', KEYS[1], 'claimant', ARGV[4], 'lease_until', now_ms + tonumber(ARGV[5]),
             'orphaned', '1')
  redis.call('HDEL', KEYS[1], 'proof_after')  -- its dead claimant may have sent until now
  owned = 1
elseif r[2] == 'uncertain' and (tonumber(r[4]) or 0) < now_ms then
  redis.call('HSET', KEYS[1], 'claimant', ARGV[4], 'lease_until', now_ms + tonumber(ARGV[5]))
  owned = 1
end
return {owned, tostring(now_ms), redis.call('HGETALL', KEYS[1])}
"""
)

#: ARGV: fingerprint, model, payload JSON, claimant token, lease ms, ttl s. After a loss:
#: this process's claim in flight is "submitting" again, so other callers wait for it.
RECLAIM = (
    _CHECK_EPOCH
    + _NOW_MS
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'model', ARGV[2], 'payload', ARGV[3],
           'state', 'submitting', 'claimant', ARGV[4],
           'lease_until', now_ms + tonumber(ARGV[5]), 'sent_at', now_ms, 'orphaned', '0')
redis.call('EXPIRE', KEYS[1], ARGV[6])
return 1
"""
)

#: ARGV: prediction id, channel, key, then the claim's fingerprint, model, payload and ttl s
#: (the record is written whole if Redis lost it meanwhile).
SUBMITTED = (
    _CHECK_EPOCH
    + _NOW_MS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'fingerprint', ARGV[4], 'model', ARGV[5], 'payload', ARGV[6],
             'claimant', '', 'lease_until', 0, 'sent_at', now_ms, 'orphaned', '0')
  redis.call('EXPIRE', KEYS[1], ARGV[7])
end
redis.call('HSET', KEYS[1], 'state', 'submitted', 'prediction_id', ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""
)

#: ARGV: channel, key, claimant token ('' by hand). A claim drops only itself: a late drop (a
#: retry that lands after another caller claimed the key afresh) leaves that claim alone. By
#: hand, only an uncertain or orphaned key is dropped. Returns 1 if dropped, else 0.
ABSENT = (
    _CHECK_EPOCH
    + _NOW_MS
    + """
local r = redis.call('HMGET', KEYS[1], 'state', 'claimant', 'lease_until')
if ARGV[3] ~= '' then
  if r[2] ~= ARGV[3] then return 0 end
elseif r[1] and not (r[1] == 'uncertain' or tonumber(r[3]) < now_ms) then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
"""
)

#: ARGV: sent_at ms, proof_after ms, reason, channel, key. Nobody owns the key after this.
UNCERTAIN = (
    _CHECK_EPOCH
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'state', 'uncertain', 'sent_at', ARGV[1], 'proof_after', ARGV[2],
             'reason', ARGV[3], 'claimant', '', 'lease_until', 0, 'orphaned', '0')
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""
)

#: ARGV: claimant token, channel, key. The claimant gives up without an outcome: its claim is
#: an orphan at once (lease 0), for the next caller to take over and reconcile (an uncertain
#: key stays uncertain, for the next caller to check).
ABANDON = (
    _CHECK_EPOCH
    + """
local r = redis.call('HMGET', KEYS[1], 'state', 'claimant')
if (r[1] == 'submitting' or r[1] == 'uncertain') and r[2] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'lease_until', 0)
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""
)

#: Returns {now ms, HGETALL}.
READ = _CHECK_EPOCH + _NOW_MS + "return {tostring(now_ms), redis.call('HGETALL', KEYS[1])}"

#: KEYS: records; ARGV: lease ms, then each record's claimant token. Returns the 1-based
#: positions of the records this claimant no longer holds.
RENEW_CLAIMS = (
    _CHECK_EPOCH
    + _NOW_MS
    + """
local gone = {}
for i = 1, #KEYS do
  local r = redis.call('HMGET', KEYS[i], 'state', 'claimant')
  if (r[1] == 'submitting' or r[1] == 'uncertain') and r[2] == ARGV[i + 1] then
    redis.call('HSET', KEYS[i], 'lease_until', now_ms + tonumber(ARGV[1]))
  else
    table.insert(gone, i)
  end
end
return gone
"""
)

SCRIPTS = {
    "epoch": EPOCH,
    "hold": HOLD,
    "reregister": REREGISTER,
    "reclaim": RECLAIM,
    "rate": RATE,
    "acquire": ACQUIRE,
    "bind": BIND,
    "release": RELEASE,
    "renew": RENEW,
    "first": FIRST,
    "publish": PUBLISH,
    "claim": CLAIM,
    "submitted": SUBMITTED,
    "absent": ABSENT,
    "uncertain": UNCERTAIN,
    "abandon": ABANDON,
    "read": READ,
    "renew_claims": RENEW_CLAIMS,
}


def register(client: Any) -> dict[str, Any]:
    """Every script registered on ``client`` (loaded on first use, again after a restart)."""
    return {name: client.register_script(source) for name, source in SCRIPTS.items()}
