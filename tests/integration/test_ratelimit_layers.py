"""The three fair-use layers in both stores, memory and Redis: throttle and quota admitted
together, usage counters, and concurrency slots with leases. Every scenario, the property
tests included, runs against both stores on an injected clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from synchub.core.clock import FixedClock
from synchub.ratelimit.model import (
    Limit,
    QuotaPeriod,
    UsageCounts,
    epoch_microseconds,
    month_window,
    retry_after_header,
)
from synchub.ratelimit.store import MemoryRateLimiter, RateLimiter, RedisRateLimiter

REDIS_URL = os.environ.get("SYNCHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
START = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)
AUCKLAND = "Pacific/Auckland"
PER_MINUTE = Limit(policy="default", rate=60, period_seconds=60, burst=5)
OPEN = Limit(policy="default", rate=1_000_000, period_seconds=1, burst=1_000_000)
Build = Callable[[FixedClock], tuple[RateLimiter, Callable[[], None]]]


@pytest.fixture(scope="module")
def redis_client() -> Iterator[redis.Redis]:
    """A Redis connection; the Redis runs skip only when no server answers."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"Redis is unreachable at {REDIS_URL} ({exc}); set SYNCHUB_TEST_REDIS_URL")
    yield client
    client.close()


@pytest.fixture(scope="module", params=["memory", "redis"])
def build(request: pytest.FixtureRequest) -> Build:
    """Makes a store on a given clock, and a function that deletes what it stored.

    Module-scoped so Hypothesis can run many examples; each store gets its own key prefix.
    """
    if request.param == "memory":
        return lambda clock: (MemoryRateLimiter(clock), lambda: None)
    client: redis.Redis = request.getfixturevalue("redis_client")

    def make(clock: FixedClock) -> tuple[RateLimiter, Callable[[], None]]:
        prefix = f"synchub:test:{uuid.uuid4().hex}:rl"

        def clean() -> None:
            for key in client.scan_iter(match=f"{prefix}:*", count=500):
                client.delete(key)

        return RedisRateLimiter(client, clock, prefix=prefix), clean

    return make


@pytest.fixture
def store(build: Build) -> Iterator[tuple[RateLimiter, FixedClock]]:
    """One store on a clock at START."""
    clock = FixedClock(START)
    limiter, clean = build(clock)
    yield limiter, clock
    clean()


def period_at(at: datetime, quota: int) -> QuotaPeriod:
    """The Auckland month containing `at`, with a quota of `quota` uses."""
    month = month_window(at, AUCKLAND)
    return QuotaPeriod(month.period, quota, epoch_microseconds(month.ends_at))


# --- throttle and quota together ---------------------------------------------------------


def test_admit_refuses_at_the_throttle_then_at_the_quota(
    store: tuple[RateLimiter, FixedClock],
) -> None:
    limiter, clock = store
    quota = period_at(clock.now(), 6)
    burst = [limiter.admit("t", PER_MINUTE, quota) for _ in range(6)]
    clock.advance(timedelta(seconds=2))
    later = [limiter.admit("t", PER_MINUTE, quota) for _ in range(2)]

    assert [a.refused_by for a in burst] == [None] * 5 + ["throttle"]
    assert [a.quota_used for a in burst] == [1, 2, 3, 4, 5, 5]
    assert [a.refused_by for a in later] == [None, "quota"]
    assert limiter.usage("t", quota.period) == UsageCounts(
        admitted=6, rejected_throttle=1, rejected_quota=1, quota_used=6
    )


def test_a_request_the_quota_refuses_spends_no_throttle_unit(
    store: tuple[RateLimiter, FixedClock],
) -> None:
    limiter, clock = store
    exhausted = period_at(clock.now(), 1)
    limiter.admit("t", PER_MINUTE, exhausted)
    refused = [limiter.admit("t", PER_MINUTE, exhausted) for _ in range(3)]

    after = limiter.check("t", PER_MINUTE)

    assert [a.refused_by for a in refused] == ["quota"] * 3
    assert after.remaining == 3  # 5 - the one admitted - this check


def test_usage_is_per_tenant_and_per_period(store: tuple[RateLimiter, FixedClock]) -> None:
    limiter, clock = store
    december = period_at(clock.now(), 100)
    limiter.admit("a", OPEN, december)
    limiter.admit("a", OPEN, december)
    limiter.admit("b", OPEN, december)

    assert limiter.usage("a", december.period).admitted == 2
    assert limiter.usage("b", december.period).admitted == 1
    assert limiter.usage("a", "2027-01") == UsageCounts()


# --- concurrency slots ------------------------------------------------------------------


def test_a_refused_slot_gives_the_quota_use_back_and_counts_as_a_rejection(
    store: tuple[RateLimiter, FixedClock],
) -> None:
    limiter, clock = store
    quota = period_at(clock.now(), 10)
    limiter.admit("t", OPEN, quota)
    held = limiter.acquire_slot("t", 1, 30, admitted_in=quota)
    clock.advance(timedelta(seconds=10))
    limiter.admit("t", OPEN, quota)

    refused = limiter.acquire_slot("t", 1, 30, admitted_in=quota)

    assert (held.token is not None, held.in_use, held.retry_after_seconds) == (True, 1, 0.0)
    assert (refused.token, refused.in_use, refused.retry_after_seconds) == (None, 1, 20.0)
    assert limiter.usage("t", quota.period) == UsageCounts(
        admitted=1, rejected_concurrency=1, quota_used=1, slots_in_use=1
    )


def test_renewing_a_lease_keeps_the_slot_past_its_first_lease(
    store: tuple[RateLimiter, FixedClock],
) -> None:
    limiter, clock = store
    token = limiter.acquire("t", 1, 30)
    assert token is not None
    clock.advance(timedelta(seconds=20))

    renewed = limiter.renew("t", token, 30)
    clock.advance(timedelta(seconds=29.999999))  # the lease now ends 30 s after the renewal
    still_held = limiter.acquire("t", 1, 30)
    clock.advance(timedelta(microseconds=1))
    expired = limiter.renew("t", token, 30)

    assert renewed
    assert still_held is None
    assert not expired  # a lease that ran out cannot be brought back: the slot is free
    assert limiter.renew("t", "not-a-token", 30) is False
    assert limiter.acquire("t", 1, 30) is not None


def test_usage_counts_only_live_leases(store: tuple[RateLimiter, FixedClock]) -> None:
    limiter, clock = store
    limiter.acquire("t", 3, 10)
    limiter.acquire("t", 3, 60)
    released = limiter.acquire("t", 3, 60)
    assert released is not None
    limiter.release("t", released)
    clock.advance(timedelta(seconds=10))

    assert limiter.usage("t", "2026-12").slots_in_use == 1


# --- properties --------------------------------------------------------------------------

limits = st.builds(
    Limit,
    policy=st.just("p"),
    rate=st.integers(1, 30),
    period_seconds=st.sampled_from([1, 7, 60]),
    burst=st.integers(1, 8),
)
gaps = st.lists(
    st.one_of(st.just(0), st.integers(0, 400_000), st.integers(0, 5_000_000)),
    min_size=1,
    max_size=40,
)
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(limit=limits, steps=gaps)
def test_admitted_requests_in_any_window_never_exceed_rate_times_window_plus_burst(
    build: Build, limit: Limit, steps: list[int]
) -> None:
    clock = FixedClock(START)
    limiter, clean = build(clock)
    quota = period_at(START, 1_000_000)
    admitted: list[int] = []
    try:
        for gap in steps:
            clock.advance(timedelta(microseconds=gap))
            if limiter.admit("t", limit, quota).admitted:
                admitted.append(epoch_microseconds(clock.now()))
    finally:
        clean()
    period_us = round(limit.period_seconds * 1_000_000)
    for i, first in enumerate(admitted):
        for j in range(i, len(admitted)):
            # (j - i + 1) <= rate * W / period + burst, in integers
            assert (j - i + 1 - limit.burst) * period_us <= limit.rate * (admitted[j] - first)


@PROPERTY
@given(limit=limits, steps=gaps, rounded=st.booleans())
def test_a_client_that_waits_retry_after_is_admitted_and_never_earlier(
    build: Build, limit: Limit, steps: list[int], rounded: bool
) -> None:
    clock = FixedClock(START)
    limiter, clean = build(clock)
    quota = period_at(START, 1_000_000)
    try:
        for gap in steps:
            clock.advance(timedelta(microseconds=gap))
            decision = limiter.admit("t", limit, quota).decision
            if decision.allowed:
                continue
            exact = timedelta(seconds=decision.retry_after_seconds)
            clock.advance(exact - timedelta(microseconds=1))
            assert not limiter.admit("t", limit, quota).admitted  # one microsecond early
            header = timedelta(seconds=retry_after_header(decision.retry_after_seconds))
            clock.advance((header if rounded else exact) - exact + timedelta(microseconds=1))
            assert limiter.admit("t", limit, quota).admitted
    finally:
        clean()


# Month ends in Auckland around the daylight-saving changes: DST ends on the first Sunday of
# April (March 31 -> April 1 is in NZDT, April 30 -> May 1 in NZST) and starts on the last
# Sunday of September (September 30 -> October 1 in NZDT).
months = st.tuples(st.integers(2024, 2030), st.integers(1, 12))


@PROPERTY
# The uses start at least a second before the boundary: Redis expires keys on its own clock,
# and a counter whose period ends within milliseconds of the pinned test clock would expire
# (harmlessly, as garbage) while the test still runs.
@given(
    month=months,
    quota_limit=st.integers(1, 4),
    spread_us=st.integers(10**6, 3 * 86_400 * 10**6),
)
@example(month=(2026, 3), quota_limit=2, spread_us=10**6)
@example(month=(2026, 4), quota_limit=3, spread_us=86_400 * 10**6)
@example(month=(2026, 9), quota_limit=1, spread_us=3_600 * 10**6)
@example(month=(2025, 4), quota_limit=2, spread_us=7_200 * 10**6)
def test_quotas_reset_exactly_at_the_auckland_month_boundary(
    build: Build, month: tuple[int, int], quota_limit: int, spread_us: int
) -> None:
    year, number = month
    inside = datetime(year, number, 15, tzinfo=UTC)
    boundary = month_window(inside, AUCKLAND).ends_at
    clock = FixedClock(boundary - timedelta(microseconds=spread_us))
    limiter, clean = build(clock)
    try:
        old = period_at(clock.now(), quota_limit)
        used = [limiter.admit("t", OPEN, old).admitted for _ in range(quota_limit)]
        clock.advance(boundary - clock.now() - timedelta(microseconds=1))
        last_instant = limiter.admit("t", OPEN, period_at(clock.now(), quota_limit))
        clock.advance(timedelta(microseconds=1))
        new = period_at(clock.now(), quota_limit)
        first_instant = limiter.admit("t", OPEN, new)
        fresh = limiter.usage("t", new.period)
    finally:
        clean()

    assert all(used)
    assert last_instant.refused_by == "quota"
    assert first_instant.admitted
    assert first_instant.quota_used == 1
    assert new.period != old.period
    assert fresh == UsageCounts(admitted=1, quota_used=1)
    local = boundary.astimezone(ZoneInfo(AUCKLAND))
    assert (local.day, local.hour, local.minute, local.second) == (1, 0, 0, 0)


ops = st.lists(
    st.tuples(
        st.sampled_from(["admit", "admit", "slot", "release", "renew", "usage"]),
        st.integers(0, 2_000_000),
    ),
    min_size=1,
    max_size=30,
)


@PROPERTY
@given(limit=limits, program=ops)
def test_both_stores_give_the_same_answers_to_any_sequence_of_calls(
    redis_client: redis.Redis, limit: Limit, program: list[tuple[str, int]]
) -> None:
    """The Lua scripts and the memory store are one algorithm: same answers, same counts."""
    clocks = FixedClock(START), FixedClock(START)
    prefix = f"synchub:test:{uuid.uuid4().hex}:rl"
    stores = MemoryRateLimiter(clocks[0]), RedisRateLimiter(redis_client, clocks[1], prefix=prefix)
    quota = period_at(START, 6)
    held: tuple[list[str], list[str]] = ([], [])
    try:
        for op, gap in program:
            answers = []
            for limiter, clock, tokens in zip(stores, clocks, held, strict=True):
                clock.advance(timedelta(microseconds=gap))
                answers.append(_run(limiter, op, tokens, limit, quota))
            assert answers[0] == answers[1], op
    finally:
        for key in redis_client.scan_iter(match=f"{prefix}:*"):
            redis_client.delete(key)


def _run(
    limiter: RateLimiter, op: str, tokens: list[str], limit: Limit, quota: QuotaPeriod
) -> object:
    """One call of a generated program; the answer without random slot tokens."""
    if op == "admit":
        return limiter.admit("t", limit, quota)
    if op == "slot":
        grant = limiter.acquire_slot("t", 2, 2.5, admitted_in=quota)
        if grant.token is not None:
            tokens.append(grant.token)
        return grant.token is None, grant.in_use, grant.retry_after_seconds
    if op == "release" and tokens:
        limiter.release("t", tokens.pop(0))
        return None
    if op == "renew" and tokens:
        return limiter.renew("t", tokens[-1], 2.5)
    return limiter.usage("t", quota.period)
