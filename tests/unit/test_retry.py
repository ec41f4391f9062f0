"""Full-jitter backoff with Retry-After."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from synchub.events.retry import full_jitter_delay, is_exhausted
from synchub.register.model import RetryPolicy

POLICY = RetryPolicy(base_seconds=1, cap_seconds=300, max_attempts=8, max_age_seconds=3600)


def upper(low: float, high: float) -> float:
    return high


def test_the_ceiling_doubles_until_the_cap() -> None:
    ceilings = [full_jitter_delay(a, POLICY, uniform=upper).total_seconds() for a in range(12)]
    assert ceilings[:4] == [1, 2, 4, 8]
    assert max(ceilings) == 300


def test_retry_after_is_a_floor() -> None:
    delay = full_jitter_delay(0, POLICY, uniform=lambda lo, hi: lo, retry_after=30)
    assert delay == timedelta(seconds=30)


@given(attempt=st.integers(0, 10_000), fraction=st.floats(0, 1))
def test_delays_stay_within_zero_and_the_cap(attempt: int, fraction: float) -> None:
    delay = full_jitter_delay(attempt, POLICY, uniform=lambda lo, hi: lo + (hi - lo) * fraction)
    assert timedelta(0) <= delay <= timedelta(seconds=300)


def test_exhaustion_by_attempts_or_age() -> None:
    assert is_exhausted(8, timedelta(0), POLICY)
    assert is_exhausted(1, timedelta(hours=2), POLICY)
    assert not is_exhausted(7, timedelta(minutes=59), POLICY)


def test_a_fixed_schedule_waits_its_step_within_the_jitter() -> None:
    policy = RetryPolicy(schedule=(0.0, 5.0, 300.0), jitter_ratio=0.1, max_attempts=4)
    low = full_jitter_delay(2, policy, uniform=lambda a, b: a).total_seconds()
    high = full_jitter_delay(2, policy, uniform=lambda a, b: b).total_seconds()
    assert (low, high) == (4.5, 5.5)
    assert full_jitter_delay(1, policy, uniform=lambda a, b: b).total_seconds() == 0.0
    assert full_jitter_delay(9, policy, uniform=lambda a, b: a).total_seconds() == 270.0
