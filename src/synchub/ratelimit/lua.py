"""The Redis backend's Lua scripts: every read-modify-write of rate-limit state is one of these.

Each script runs atomically on the server (STANDARDS §2): no GET-then-INCR from a client, and
INCR+EXPIRE in the same script. All keys one script touches belong to one tenant and share its
`{tenant}` hash tag. Times are whole microseconds; numbers that go back to Redis inside a
string are formatted with `%.0f` (Lua's own number-to-string keeps only 14 digits).
"""

from __future__ import annotations

# Every script reads "now" (microseconds) from an optional last ARGV, whose position it passes
# to clock, when given (a pinned clock), else from the Redis server's TIME, so all processes
# sharing Redis agree on the time. Without a pinned clock the argument is left out.
_CLOCK = """
local function clock(at)
  local pinned = ARGV[at]
  if pinned and pinned ~= '' then
    return tonumber(pinned)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""

# Usage counters: one hash per tenant and period, living until the period ends.
_COUNT = """
local function count(usage, field, by, ends_at, now)
  redis.call('HINCRBY', usage, field, by)
  if redis.call('PTTL', usage) == -1 then
    redis.call('PEXPIRE', usage, math.max(1, math.ceil((ends_at - now) / 1000)))
  end
end
"""

# GCRA exactly as model.gcra_us. The decision depends only on the debt max(tat - now, 0), so the
# reply is that debt (us), or -1 - debt when refused, and Python builds the Decision with the
# model itself. ARGV: T (us), tau (us), cost, [now].
GCRA_SCRIPT = (
    _CLOCK
    + """
local now = clock(4)
local debt = math.max(tonumber(redis.call('GET', KEYS[1]) or now) - now, 0)
local new_tat = now + debt + tonumber(ARGV[3]) * tonumber(ARGV[1])
if now < new_tat - tonumber(ARGV[2]) then
  return -1 - debt
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
  'EX', math.ceil((new_tat - now) / 1000000))
return debt
"""
)

# One use of a quota. EXPIRE only on the first use (the period's end); a refusal is rolled
# back so it does not count. ARGV: quota, period end (us), [now].
QUOTA_SCRIPT = (
    _CLOCK
    + """
local used = redis.call('INCR', KEYS[1])
if used == 1 then
  local ttl = math.ceil((tonumber(ARGV[2]) - clock(3)) / 1000)
  redis.call('PEXPIRE', KEYS[1], math.max(1, ttl))
end
if used > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return {0, used - 1}
end
return {1, used}
"""
)

# Throttle, quota and usage counters in one step. KEYS: GCRA TAT, quota counter, usage hash.
# ARGV: T (us), tau (us), cost, quota, period end (us), [now]. The TAT is stored only when the
# quota admits too, so a request the quota refuses spends nothing. Reply: {verdict, debt,
# used} with verdict 0 admitted, 1 throttle refused, 2 quota refused.
ADMIT_SCRIPT = (
    _CLOCK
    + _COUNT
    + """
local now = clock(6)
local ends_at = tonumber(ARGV[5])
local debt = math.max(tonumber(redis.call('GET', KEYS[1]) or now) - now, 0)
local new_tat = now + debt + tonumber(ARGV[3]) * tonumber(ARGV[1])
if now < new_tat - tonumber(ARGV[2]) then
  count(KEYS[3], 'rejected_throttle', 1, ends_at, now)
  return {1, debt, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
local used = redis.call('INCR', KEYS[2])
if used == 1 then
  redis.call('PEXPIRE', KEYS[2], math.max(1, math.ceil((ends_at - now) / 1000)))
end
if used > tonumber(ARGV[4]) then
  redis.call('DECR', KEYS[2])
  count(KEYS[3], 'rejected_quota', 1, ends_at, now)
  return {2, debt, used - 1}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
  'EX', math.ceil((new_tat - now) / 1000000))
count(KEYS[3], 'admitted', 1, ends_at, now)
return {0, debt, used}
"""
)

# Concurrency slots: a sorted set of token -> lease expiry (us); the key lives as long as its
# longest lease. KEYS: leases, then optionally the quota counter and usage hash of the period
# the request was admitted in: a refusal then gives its quota use back and counts as a
# concurrency rejection instead of an admitted call. ARGV: limit, lease (us), token, period
# end (us) or '', [now]. Reply: {taken, in use, us until the earliest lease ends (refusals)}.
SLOT_SCRIPT = (
    _CLOCK
    + _COUNT
    + """
local now = clock(5)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[1]) then
  if #KEYS == 3 then
    local ends_at = tonumber(ARGV[4])
    if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
      redis.call('DECR', KEYS[2])
    end
    if tonumber(redis.call('HGET', KEYS[3], 'admitted') or '0') > 0 then
      redis.call('HINCRBY', KEYS[3], 'admitted', -1)
    end
    count(KEYS[3], 'rejected_concurrency', 1, ends_at, now)
  end
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, held, tonumber(first[2]) - now}
end
redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((tonumber(last[2]) - now) / 1000)))
return {1, held + 1, 0}
"""
)

# Extend a live lease to now + lease. KEYS: leases. ARGV: token, lease (us), [now]. Reply 1, or
# 0 when the token is unknown or its lease already ran out (the slot may be someone else's).
RENEW_SCRIPT = (
    _CLOCK
    + """
local now = clock(3)
local ends = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not ends or tonumber(ends) <= now then
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', string.format('%.0f', now + tonumber(ARGV[2])), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((tonumber(last[2]) - now) / 1000)))
return 1
"""
)

# Read a tenant's usage in one round trip. KEYS: usage hash, quota counter, leases. ARGV: [now].
# Reply: {admitted, rejected_throttle, rejected_quota, rejected_concurrency, quota used, slots
# in use}.
USAGE_SCRIPT = (
    _CLOCK
    + """
local now = clock(1)
local counts = redis.call('HMGET', KEYS[1], 'admitted', 'rejected_throttle', 'rejected_quota',
  'rejected_concurrency')
local reply = {}
for i = 1, 4 do
  reply[i] = tonumber(counts[i] or '0')
end
reply[5] = tonumber(redis.call('GET', KEYS[2]) or '0')
reply[6] = redis.call('ZCOUNT', KEYS[3], string.format('(%.0f', now), '+inf')
return reply
"""
)
