"""Where rate-limit state lives: in process memory, or in Redis shared by every process.

Both backends keep the same state under the same rules; the pure model decides. Redis keys are
`<prefix>:{<tenant>}:<policy>` (GCRA), `...:quota:<period>` and `...:concurrency:leases`: policy
names hold no `:`, so they never collide, and every key of one tenant shares a Cluster hash
slot. Every read-modify-write is one Lua script, run with EVALSHA (STANDARDS §2).
"""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from synchub.core.clock import Clock
from synchub.core.errors import PermanentError, TransientError
from synchub.ratelimit.model import Decision, Limit, check_cost, gcra_us, to_microseconds

DEFAULT_PREFIX = "synchub:rl"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)
_SWEEP_EVERY = 4096


class RateLimiter(Protocol):
    """Shared rate-limit state for many requests.

    Each call is atomic: concurrent callers (threads, or processes sharing Redis) never admit
    more than one caller alone would. Keys are tenants (or other partition keys) and must not
    contain `{` or `}`.
    """

    def check(self, key: str, limit: Limit, *, cost: int = 1) -> Decision:
        """Run GCRA for (key, limit.policy) and record the request if admitted."""
        ...

    def consume_quota(
        self, key: str, period: str, quota: int, expires_at_epoch: float
    ) -> tuple[bool, int]:
        """Count one use in `period`; (allowed, used after this call). Refusals are not counted."""
        ...

    def acquire(self, key: str, limit: int, lease_seconds: float) -> str | None:
        """Take one of `limit` concurrency slots for `lease_seconds`; a token, or None if full."""
        ...

    def release(self, key: str, token: str) -> None:
        """Give a slot back early (unknown or expired tokens are ignored)."""
        ...


def epoch_microseconds(at: datetime) -> int:
    """An aware instant as whole microseconds since the Unix epoch."""
    return (at - _EPOCH) // _ONE_MICROSECOND


def _check_key(key: str) -> None:
    if not key or "{" in key or "}" in key:
        raise ValueError("rate-limit keys and periods are non-empty and free of { }")


def _check_slots(limit: int, lease_us: int) -> None:
    if limit < 1 or lease_us < 1:
        raise ValueError("need at least one slot and a lease of at least one microsecond")


def quota_expiry_ms(expires_at_us: int, now_us: int) -> int:
    """Milliseconds a new quota counter lives: until the period ends, at least 1 ms."""
    return max(1, -(-(expires_at_us - now_us) // 1000))


def new_slot_token() -> str:
    """A random, unguessable concurrency-slot token."""
    return secrets.token_urlsafe(16)


class MemoryRateLimiter:
    """Rate-limit state in this process (tests, demo mode, single-process deployments)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tats: dict[tuple[str, str], int] = {}
        self._counters: dict[tuple[str, str], tuple[int, int]] = {}
        self._slots: dict[str, dict[str, int]] = {}
        self._calls = 0

    def check(self, key: str, limit: Limit, *, cost: int = 1) -> Decision:
        """Run GCRA for (key, limit.policy) and record the request if admitted."""
        _check_key(key)
        with self._lock:
            now = self._tick()
            decision, new_tat = gcra_us(self._tats.get((key, limit.policy)), now, limit, cost=cost)
            if new_tat is not None:
                self._tats[(key, limit.policy)] = new_tat
        return decision

    def consume_quota(
        self, key: str, period: str, quota: int, expires_at_epoch: float
    ) -> tuple[bool, int]:
        """Count one use in `period`; (allowed, used after this call). Refusals are not counted."""
        _check_key(key)
        _check_key(period)
        with self._lock:
            now = self._tick()
            used, expires = self._counters.get((key, period), (0, now))
            if expires <= now:
                ttl_ms = quota_expiry_ms(to_microseconds(expires_at_epoch), now)
                used, expires = 0, now + ttl_ms * 1000
            if used >= quota:
                return False, used
            self._counters[(key, period)] = (used + 1, expires)
            return True, used + 1

    def acquire(self, key: str, limit: int, lease_seconds: float) -> str | None:
        """Take one of `limit` concurrency slots for `lease_seconds`; a token, or None if full."""
        _check_key(key)
        lease_us = to_microseconds(lease_seconds)
        _check_slots(limit, lease_us)
        with self._lock:
            now = self._tick()
            leases = {t: e for t, e in self._slots.get(key, {}).items() if e > now}
            self._slots[key] = leases
            if len(leases) >= limit:
                return None
            token = new_slot_token()
            leases[token] = now + lease_us
            return token

    def release(self, key: str, token: str) -> None:
        """Give a slot back early (unknown or expired tokens are ignored)."""
        _check_key(key)
        with self._lock:
            self._slots.get(key, {}).pop(token, None)

    def _tick(self) -> int:
        """The clock in microseconds; every few thousand calls, drop state that has expired."""
        now = epoch_microseconds(self._clock.now())
        self._calls += 1
        if self._calls % _SWEEP_EVERY == 0:
            self._sweep(now)
        return now

    def _sweep(self, now: int) -> None:
        # A TAT in the past means a full bucket, the same as no entry (Redis lets the key expire).
        self._tats = {k: tat for k, tat in self._tats.items() if tat > now}
        self._counters = {k: c for k, c in self._counters.items() if c[1] > now}
        for key, leases in list(self._slots.items()):
            live = {token: ends for token, ends in leases.items() if ends > now}
            if live:
                self._slots[key] = live
            else:
                del self._slots[key]


# Every script reads "now" (microseconds) from its last ARGV when given, else from the Redis
# server's TIME, so all processes sharing Redis agree on the time.
_CLOCK = """
local function clock()
  if ARGV[#ARGV] ~= '' then
    return tonumber(ARGV[#ARGV])
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""

# GCRA exactly as model.gcra_us. The decision depends only on the debt max(tat - now, 0), so the
# reply is that debt (us), or -1 - debt when refused, and Python builds the Decision with the
# model itself. ARGV: T (us), tau (us), cost, now.
GCRA_SCRIPT = (
    _CLOCK
    + """
local now = clock()
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
# back so it does not count. ARGV: quota, period end (us), now.
QUOTA_SCRIPT = (
    _CLOCK
    + """
local used = redis.call('INCR', KEYS[1])
if used == 1 then
  local ttl = math.ceil((tonumber(ARGV[2]) - clock()) / 1000)
  redis.call('PEXPIRE', KEYS[1], math.max(1, ttl))
end
if used > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return {0, used - 1}
end
return {1, used}
"""
)

# Concurrency slots: a sorted set of token -> lease expiry (us); the key lives as long as its
# longest lease. ARGV: limit, lease (us), token, now.
SLOT_SCRIPT = (
    _CLOCK
    + """
local now = clock()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((tonumber(last[2]) - now) / 1000)))
return 1
"""
)


class RedisRateLimiter:
    """Rate-limit state in Redis, shared by every process; time comes from the Redis server.

    Pass `clock` only to pin the time (tests, replays): every script then takes "now" from it
    instead of Redis TIME, so all callers must share that clock.
    """

    def __init__(
        self, client: redis.Redis, clock: Clock | None = None, *, prefix: str = DEFAULT_PREFIX
    ) -> None:
        self._client = client
        self._clock = clock
        self._prefix = prefix
        self._gcra = client.register_script(GCRA_SCRIPT)
        self._quota = client.register_script(QUOTA_SCRIPT)
        self._slots = client.register_script(SLOT_SCRIPT)

    def check(self, key: str, limit: Limit, *, cost: int = 1) -> Decision:
        """Run GCRA for (key, limit.policy) and record the request if admitted."""
        _check_key(key)
        check_cost(limit, cost)
        name = f"{self._prefix}:{{{key}}}:{limit.policy}"
        reply: int = self._run(
            self._gcra, name, limit.interval_us, limit.tolerance_us, cost, self._now_arg()
        )
        debt = reply if reply >= 0 else -1 - reply
        # Only the distance from now to the stored TAT matters, so "now" can be 0 here.
        decision, _ = gcra_us(debt, 0, limit, cost=cost)
        if decision.allowed != (reply >= 0):
            raise RuntimeError("the GCRA Lua script and the model disagree")
        return decision

    def consume_quota(
        self, key: str, period: str, quota: int, expires_at_epoch: float
    ) -> tuple[bool, int]:
        """Count one use in `period`; (allowed, used after this call). Refusals are not counted."""
        _check_key(key)
        _check_key(period)
        name = f"{self._prefix}:{{{key}}}:quota:{period}"
        expires_at = to_microseconds(expires_at_epoch)
        allowed, used = self._run(self._quota, name, quota, expires_at, self._now_arg())
        return bool(allowed), int(used)

    def acquire(self, key: str, limit: int, lease_seconds: float) -> str | None:
        """Take one of `limit` concurrency slots for `lease_seconds`; a token, or None if full."""
        _check_key(key)
        lease_us = to_microseconds(lease_seconds)
        _check_slots(limit, lease_us)
        token = new_slot_token()
        name = f"{self._prefix}:{{{key}}}:concurrency:leases"
        taken = self._run(self._slots, name, limit, lease_us, token, self._now_arg())
        return token if taken else None

    def release(self, key: str, token: str) -> None:
        """Give a slot back early (unknown or expired tokens are ignored)."""
        _check_key(key)
        name = f"{self._prefix}:{{{key}}}:concurrency:leases"
        try:
            self._client.zrem(name, token)
        except redis.RedisError as exc:
            raise _translated(exc) from exc

    def _run(self, script: Script, key: str, *args: int | str) -> Any:
        """EVALSHA a registered script on one key; redis-py errors become hub errors."""
        try:
            try:
                # What Script.__call__ does, without its per-call import and type checks,
                # which cost more than a tenth of a local round trip.
                return self._client.evalsha(script.sha, 1, key, *args)
            except NoScriptError:  # a restarted or different server: Script loads and retries
                return script(keys=[key], args=args)
        except redis.RedisError as exc:
            raise _translated(exc) from exc

    def _now_arg(self) -> str:
        return "" if self._clock is None else str(epoch_microseconds(self._clock.now()))


def _translated(exc: redis.RedisError) -> Exception:
    """The hub error for a redis-py error: transient when Redis is unreachable."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return TransientError("the rate-limit store (Redis) is unreachable")
    return PermanentError("the rate-limit store (Redis) refused a command")
