"""Where rate-limit state lives: in process memory, or in Redis shared by every process.

Both backends keep the same state under the same rules, and the pure model decides: GCRA
throttles per (tenant, policy), monthly quota counters, usage counters per period (calls
admitted and rejections by layer) and concurrency slots with leases. The Redis backend is in
`redis_store.py` (one Lua script per decision, `lua.py`); both are importable from here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from synchub.core.clock import Clock
from synchub.ratelimit.limiter import RateLimiter
from synchub.ratelimit.lua import GCRA_SCRIPT
from synchub.ratelimit.model import (
    CONCURRENCY,
    MICROSECONDS,
    QUOTA,
    THROTTLE,
    Admission,
    Decision,
    Limit,
    QuotaPeriod,
    SlotGrant,
    UsageCounts,
    check_key,
    check_slots,
    epoch_microseconds,
    gcra_us,
    new_slot_token,
    quota_expiry_ms,
    to_microseconds,
)
from synchub.ratelimit.redis_store import DEFAULT_PREFIX, RedisRateLimiter

__all__ = [
    "DEFAULT_PREFIX",
    "GCRA_SCRIPT",
    "MemoryRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "epoch_microseconds",
]

_SWEEP_EVERY = 4096


@dataclass
class _Usage:
    """One tenant's counters for one period, and when they expire (us)."""

    expires_at: int
    counts: dict[str, int]


class MemoryRateLimiter:
    """Rate-limit state in this process (tests, demo mode, single-process deployments)."""

    does_io = False

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tats: dict[tuple[str, str], int] = {}
        self._counters: dict[tuple[str, str], tuple[int, int]] = {}
        self._usage: dict[tuple[str, str], _Usage] = {}
        self._slots: dict[str, dict[str, int]] = {}
        self._calls = 0

    def check(self, key: str, limit: Limit, *, cost: int = 1) -> Decision:
        """Run GCRA for (key, limit.policy) and record the request if admitted."""
        check_key(key)
        with self._lock:
            now = self._tick()
            decision, new_tat = gcra_us(self._tats.get((key, limit.policy)), now, limit, cost=cost)
            if new_tat is not None:
                self._tats[(key, limit.policy)] = new_tat
        return decision

    def admit(self, key: str, limit: Limit, quota: QuotaPeriod, *, cost: int = 1) -> Admission:
        """Throttle, then quota, then count the outcome in the period's usage, atomically."""
        check_key(key)
        with self._lock:
            now = self._tick()
            decision, new_tat = gcra_us(self._tats.get((key, limit.policy)), now, limit, cost=cost)
            used = self._quota_used(key, quota.period, now)
            if new_tat is None:
                self._count(key, quota, now, "rejected_throttle")
                return Admission(decision=decision, refused_by=THROTTLE, quota_used=used)
            if used >= quota.limit:
                self._count(key, quota, now, "rejected_quota")
                return Admission(decision=decision, refused_by=QUOTA, quota_used=used)
            self._store_quota(key, quota.period, used + 1, quota.ends_at_us, now)
            self._tats[(key, limit.policy)] = new_tat
            self._count(key, quota, now, "admitted")
            return Admission(decision=decision, refused_by=None, quota_used=used + 1)

    def consume_quota(
        self, key: str, period: str, quota: int, expires_at_epoch: float
    ) -> tuple[bool, int]:
        """Count one use in `period`; (allowed, used after this call). Refusals are not counted."""
        check_key(key)
        check_key(period)
        with self._lock:
            now = self._tick()
            used = self._quota_used(key, period, now)
            if used >= quota:
                return False, used
            self._store_quota(key, period, used + 1, to_microseconds(expires_at_epoch), now)
            return True, used + 1

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
        with self._lock:
            now = self._tick()
            leases = self._live_leases(key, now)
            if len(leases) >= limit:
                if admitted_in is not None:
                    self._undo_admission(key, admitted_in, now)
                wait = (min(leases.values()) - now) / MICROSECONDS
                return SlotGrant(token=None, in_use=len(leases), retry_after_seconds=wait)
            token = new_slot_token()
            leases[token] = now + lease_us
            return SlotGrant(token=token, in_use=len(leases), retry_after_seconds=0.0)

    def renew(self, key: str, token: str, lease_seconds: float) -> bool:
        """Extend a live lease to `lease_seconds` from now; False if it is unknown or ran out."""
        check_key(key)
        lease_us = to_microseconds(lease_seconds)
        check_slots(1, lease_us)
        with self._lock:
            now = self._tick()
            leases = self._live_leases(key, now)
            if token not in leases:
                return False
            leases[token] = now + lease_us
            return True

    def release(self, key: str, token: str) -> None:
        """Give a slot back early (unknown or expired tokens are ignored)."""
        check_key(key)
        with self._lock:
            self._slots.get(key, {}).pop(token, None)

    def usage(self, key: str, period: str) -> UsageCounts:
        """The tenant's counters in `period` and the slots it holds now."""
        check_key(key)
        check_key(period)
        with self._lock:
            now = self._tick()
            entry = self._usage.get((key, period))
            counts = entry.counts if entry is not None and entry.expires_at > now else {}
            return UsageCounts(
                admitted=counts.get("admitted", 0),
                rejected_throttle=counts.get("rejected_throttle", 0),
                rejected_quota=counts.get("rejected_quota", 0),
                rejected_concurrency=counts.get("rejected_concurrency", 0),
                quota_used=self._quota_used(key, period, now),
                slots_in_use=sum(1 for ends in self._slots.get(key, {}).values() if ends > now),
            )

    # -- state under the lock ---------------------------------------------------------------

    def _quota_used(self, key: str, period: str, now: int) -> int:
        used, expires = self._counters.get((key, period), (0, now))
        return used if expires > now else 0

    def _store_quota(self, key: str, period: str, used: int, ends_at_us: int, now: int) -> None:
        _, expires = self._counters.get((key, period), (0, now))
        if used == 1 or expires <= now:  # a new counter lives until its period ends
            expires = now + quota_expiry_ms(ends_at_us, now) * 1000
        self._counters[(key, period)] = (used, expires)

    def _count(self, key: str, quota: QuotaPeriod, now: int, name: str, by: int = 1) -> None:
        entry = self._usage.get((key, quota.period))
        if entry is None or entry.expires_at <= now:
            expires = now + quota_expiry_ms(quota.ends_at_us, now) * 1000
            entry = self._usage[(key, quota.period)] = _Usage(expires, {})
        entry.counts[name] = entry.counts.get(name, 0) + by

    def _undo_admission(self, key: str, quota: QuotaPeriod, now: int) -> None:
        used, expires = self._counters.get((key, quota.period), (0, now))
        if used > 0 and expires > now:
            self._counters[(key, quota.period)] = (used - 1, expires)
        entry = self._usage.get((key, quota.period))
        if entry is not None and entry.expires_at > now and entry.counts.get("admitted", 0) > 0:
            entry.counts["admitted"] -= 1
        self._count(key, quota, now, f"rejected_{CONCURRENCY}")

    def _live_leases(self, key: str, now: int) -> dict[str, int]:
        leases = {t: e for t, e in self._slots.get(key, {}).items() if e > now}
        self._slots[key] = leases
        return leases

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
        self._usage = {k: u for k, u in self._usage.items() if u.expires_at > now}
        for key, leases in list(self._slots.items()):
            live = {token: ends for token, ends in leases.items() if ends > now}
            if live:
                self._slots[key] = live
            else:
                del self._slots[key]
