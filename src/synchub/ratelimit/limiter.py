"""The RateLimiter role: what fair use needs from wherever rate-limit state lives.

Implementations: `MemoryRateLimiter` (one process) and `RedisRateLimiter` (shared), both
importable from `synchub.ratelimit.store`.
"""

from __future__ import annotations

from typing import Protocol

from synchub.ratelimit.model import Admission, Decision, Limit, QuotaPeriod, SlotGrant, UsageCounts


class RateLimiter(Protocol):
    """Shared rate-limit state for many requests.

    Each call is atomic: concurrent callers (threads, or processes sharing Redis) never admit
    more than one caller alone would. Keys are tenants (or other partition keys) and must not
    contain `{` or `}`.
    """

    # Whether a decision waits on I/O (a network round trip): callers on an event loop run
    # such limiters in a thread and call the others directly.
    does_io: bool

    def check(self, key: str, limit: Limit, *, cost: int = 1) -> Decision:
        """Run GCRA for (key, limit.policy) and record the request if admitted."""
        ...

    def admit(self, key: str, limit: Limit, quota: QuotaPeriod, *, cost: int = 1) -> Admission:
        """Throttle, then quota, then count the outcome in the period's usage, atomically.

        A request either layer refuses spends nothing; usage counts it under that layer.
        """
        ...

    def consume_quota(
        self, key: str, period: str, quota: int, expires_at_epoch: float
    ) -> tuple[bool, int]:
        """Count one use in `period`; (allowed, used after this call). Refusals are not counted."""
        ...

    def acquire(self, key: str, limit: int, lease_seconds: float) -> str | None:
        """Take one of `limit` concurrency slots for `lease_seconds`; a token, or None if full."""
        ...

    def acquire_slot(
        self, key: str, limit: int, lease_seconds: float, *, admitted_in: QuotaPeriod | None = None
    ) -> SlotGrant:
        """Take a slot; a refusal of a request admitted in `admitted_in` undoes its quota use
        and counts it as a concurrency rejection instead of an admitted call."""
        ...

    def renew(self, key: str, token: str, lease_seconds: float) -> bool:
        """Extend a live lease to `lease_seconds` from now; False if it is unknown or ran out."""
        ...

    def release(self, key: str, token: str) -> None:
        """Give a slot back early (unknown or expired tokens are ignored)."""
        ...

    def usage(self, key: str, period: str) -> UsageCounts:
        """The tenant's counters in `period` and the slots it holds now."""
        ...
