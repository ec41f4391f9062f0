"""Backoff arithmetic for deliveries (STANDARDS.md §3). Pure: randomness is passed in."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from synchub.register.model import RetryPolicy

Uniform = Callable[[float, float], float]


def full_jitter_delay(
    attempt: int, policy: RetryPolicy, *, uniform: Uniform, retry_after: float | None = None
) -> timedelta:
    """Delay before the next attempt: uniform(0, min(cap, base·2^attempt)), at least Retry-After.

    A policy with a fixed schedule waits schedule[attempt-1] seconds ± jitter_ratio instead.
    """
    if policy.schedule:
        step = policy.schedule[min(max(attempt, 1), len(policy.schedule)) - 1]
        delay = step * (1.0 + uniform(-policy.jitter_ratio, policy.jitter_ratio))
    else:
        ceiling = min(policy.cap_seconds, policy.base_seconds * (2 ** min(attempt, 62)))
        delay = uniform(0.0, ceiling)
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, policy.max_age_seconds)  # a vendor's word, within our limits
    return timedelta(seconds=delay)


def outlives_budget(age: timedelta, delay: timedelta, policy: RetryPolicy) -> bool:
    """Whether waiting `delay` would take a delivery past its maximum age."""
    return (age + delay).total_seconds() >= policy.max_age_seconds


def is_exhausted(attempts: int, age: timedelta, policy: RetryPolicy) -> bool:
    """Whether a delivery has used its attempts or outlived its maximum age."""
    return attempts >= policy.max_attempts or age.total_seconds() >= policy.max_age_seconds
