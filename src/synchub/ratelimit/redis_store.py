"""Rate-limit state in Redis, shared by every process: one Lua script per decision (ADR 0007).

Keys are `<prefix>:{<tenant>}:<policy>` (GCRA), `...:quota:<period>`, `...:usage:<period>` (a
hash of counters) and `...:concurrency:leases`: policy names hold no `:`, so they never
collide, and every key of one tenant shares a Cluster hash slot.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from synchub.core.clock import Clock
from synchub.core.errors import PermanentError, TransientError
from synchub.ratelimit.lua import (
    ADMIT_SCRIPT,
    GCRA_SCRIPT,
    QUOTA_SCRIPT,
    RENEW_SCRIPT,
    SLOT_SCRIPT,
    USAGE_SCRIPT,
)
from synchub.ratelimit.model import (
    MICROSECONDS,
    QUOTA,
    THROTTLE,
    Admission,
    Decision,
    Limit,
    QuotaPeriod,
    SlotGrant,
    UsageCounts,
    check_cost,
    check_key,
    check_slots,
    decision_from_debt,
    epoch_microseconds,
    new_slot_token,
    to_microseconds,
)

DEFAULT_PREFIX = "synchub:rl"
_REFUSED_BY = {0: None, 1: THROTTLE, 2: QUOTA}


class RedisRateLimiter:
    """Rate-limit state in Redis, shared by every process; time comes from the Redis server.

    Pass `clock` only to pin the time (tests, replays): every script then takes "now" from it
    instead of Redis TIME, so all callers must share that clock.
    """

    does_io = True

    def __init__(
        self, client: redis.Redis, clock: Clock | None = None, *, prefix: str = DEFAULT_PREFIX
    ) -> None:
        self._client = client
        self._clock = clock
        self._prefix = prefix
        self._gcra = client.register_script(GCRA_SCRIPT)
        self._quota = client.register_script(QUOTA_SCRIPT)
        self._admit = client.register_script(ADMIT_SCRIPT)
        self._slots = client.register_script(SLOT_SCRIPT)
        self._renew = client.register_script(RENEW_SCRIPT)
        self._usage = client.register_script(USAGE_SCRIPT)

    def check(self, key: str, limit: Limit, *, cost: int = 1) -> Decision:
        """Run GCRA for (key, limit.policy) and record the request if admitted."""
        check_key(key)
        check_cost(limit, cost)
        reply: int = self._run(
            self._gcra,
            [self._name(key, limit.policy)],
            limit.interval_us,
            limit.tolerance_us,
            cost,
            *self._now_args(),
        )
        debt = reply if reply >= 0 else -1 - reply
        return _decision(debt, limit, cost, allowed=reply >= 0)

    def admit(self, key: str, limit: Limit, quota: QuotaPeriod, *, cost: int = 1) -> Admission:
        """Throttle, then quota, then count the outcome in the period's usage: one script."""
        check_key(key)
        check_cost(limit, cost)
        keys = [
            self._name(key, limit.policy),
            self._name(key, f"quota:{quota.period}"),
            self._name(key, f"usage:{quota.period}"),
        ]
        verdict, debt, used = self._run(
            self._admit,
            keys,
            limit.interval_us,
            limit.tolerance_us,
            cost,
            quota.limit,
            quota.ends_at_us,
            *self._now_args(),
        )
        decision = _decision(int(debt), limit, cost, allowed=int(verdict) != 1)
        return Admission(decision=decision, refused_by=_REFUSED_BY[int(verdict)],
                         quota_used=int(used))  # fmt: skip

    def consume_quota(
        self, key: str, period: str, quota: int, expires_at_epoch: float
    ) -> tuple[bool, int]:
        """Count one use in `period`; (allowed, used after this call). Refusals are not counted."""
        check_key(key)
        check_key(period)
        expires_at = to_microseconds(expires_at_epoch)
        allowed, used = self._run(
            self._quota, [self._name(key, f"quota:{period}")], quota, expires_at, *self._now_args()
        )
        return bool(allowed), int(used)

    def acquire(self, key: str, limit: int, lease_seconds: float) -> str | None:
        """Take one of `limit` concurrency slots for `lease_seconds`; a token, or None if full."""
        return self.acquire_slot(key, limit, lease_seconds).token

    def acquire_slot(
        self, key: str, limit: int, lease_seconds: float, *, admitted_in: QuotaPeriod | None = None
    ) -> SlotGrant:
        """Take a slot; a refusal of a request admitted in `admitted_in` undoes its quota use
        and counts it as a concurrency rejection instead of an admitted call."""
        check_key(key)
        lease_us = to_microseconds(lease_seconds)
        check_slots(limit, lease_us)
        token = new_slot_token()
        keys = [self._leases(key)]
        ends_at: int | str = ""
        if admitted_in is not None:
            keys += [
                self._name(key, f"quota:{admitted_in.period}"),
                self._name(key, f"usage:{admitted_in.period}"),
            ]
            ends_at = admitted_in.ends_at_us
        taken, in_use, wait_us = self._run(
            self._slots, keys, limit, lease_us, token, ends_at, *self._now_args()
        )
        return SlotGrant(token=token if taken else None, in_use=int(in_use),
                         retry_after_seconds=int(wait_us) / MICROSECONDS)  # fmt: skip

    def renew(self, key: str, token: str, lease_seconds: float) -> bool:
        """Extend a live lease to `lease_seconds` from now; False if it is unknown or ran out."""
        check_key(key)
        lease_us = to_microseconds(lease_seconds)
        check_slots(1, lease_us)
        renewed = self._run(self._renew, [self._leases(key)], token, lease_us, *self._now_args())
        return bool(renewed)

    def release(self, key: str, token: str) -> None:
        """Give a slot back early (unknown or expired tokens are ignored)."""
        check_key(key)
        try:
            self._client.zrem(self._leases(key), token)
        except redis.RedisError as exc:
            raise _translated(exc) from exc

    def usage(self, key: str, period: str) -> UsageCounts:
        """The tenant's counters in `period` and the slots it holds now."""
        check_key(key)
        check_key(period)
        keys = [
            self._name(key, f"usage:{period}"),
            self._name(key, f"quota:{period}"),
            self._leases(key),
        ]
        values = [int(v) for v in self._run(self._usage, keys, *self._now_args())]
        return UsageCounts(*values)

    def _name(self, key: str, suffix: str) -> str:
        return f"{self._prefix}:{{{key}}}:{suffix}"

    def _leases(self, key: str) -> str:
        return self._name(key, "concurrency:leases")

    def _run(self, script: Script, keys: list[str], *args: int | str) -> Any:
        """EVALSHA a registered script; redis-py errors become hub errors."""
        try:
            try:
                # What Script.__call__ does, without its per-call import and type checks,
                # which cost more than a tenth of a local round trip.
                return self._client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:  # a restarted or different server: Script loads and retries
                return script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise _translated(exc) from exc

    def _now_args(self) -> tuple[str, ...]:
        """The pinned clock's time as the scripts' optional last argument; none for Redis TIME."""
        return () if self._clock is None else (str(epoch_microseconds(self._clock.now())),)


def _decision(debt: int, limit: Limit, cost: int, *, allowed: bool) -> Decision:
    """The model's decision for a stored debt; it must agree with the script's verdict."""
    decision = decision_from_debt(debt, limit, cost)
    if decision.allowed != allowed:
        raise RuntimeError("the GCRA Lua script and the model disagree")
    return decision


def _translated(exc: redis.RedisError) -> Exception:
    """The hub error for a redis-py error: transient when Redis is unreachable."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return TransientError("the rate-limit store (Redis) is unreachable")
    return PermanentError("the rate-limit store (Redis) refused a command")
