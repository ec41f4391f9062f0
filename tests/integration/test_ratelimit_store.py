"""Both rate-limit stores, memory and Redis, pass the same scenarios with the same answers."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.exceptions import NoScriptError

from synchub.core.clock import FixedClock
from synchub.core.errors import TransientError
from synchub.ratelimit.model import Limit, month_period, retry_after_header
from synchub.ratelimit.store import (
    GCRA_SCRIPT,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    epoch_microseconds,
)

REDIS_URL = os.environ.get("SYNCHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
START = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)
PER_MINUTE = Limit(policy="default", rate=60, period_seconds=60, burst=5)
AUCKLAND = "Pacific/Auckland"


@pytest.fixture(scope="module")
def redis_client() -> Iterator[redis.Redis]:
    """A Redis connection; the Redis tests skip only when no server answers."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"Redis is unreachable at {REDIS_URL} ({exc}); set SYNCHUB_TEST_REDIS_URL")
    yield client
    client.close()


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    for key in client.scan_iter(match=f"{prefix}:*", count=500):
        client.delete(key)


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own, deleted afterwards."""
    prefix = f"synchub:test:{uuid.uuid4().hex}:rl"
    yield prefix
    delete_prefix(redis_client, prefix)


@dataclass
class Backend:
    """One store kind: `build` makes a store reading a given clock; `limiter` reads `clock`."""

    build: Callable[[FixedClock], RateLimiter]
    clock: FixedClock = field(default_factory=lambda: FixedClock(START))

    def __post_init__(self) -> None:
        self.limiter = self.build(self.clock)

    def advance(self, seconds: float) -> None:
        self.clock.advance(timedelta(seconds=seconds))


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each store on a pinned clock, so Redis runs the same timeline as memory."""
    if request.param == "memory":
        return Backend(MemoryRateLimiter)
    client = request.getfixturevalue("redis_client")
    prefix = request.getfixturevalue("redis_prefix")
    return Backend(lambda clock: RedisRateLimiter(client, clock, prefix=prefix))


# --- GCRA ------------------------------------------------------------------------------


def test_a_burst_is_admitted_then_refused(backend: Backend) -> None:
    decisions = [backend.limiter.check("tenant-a", PER_MINUTE) for _ in range(6)]

    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]


def test_retry_after_is_exact(backend: Backend) -> None:
    for _ in range(5):
        backend.limiter.check("tenant-a", PER_MINUTE)
    backend.advance(0.25)

    refused = backend.limiter.check("tenant-a", PER_MINUTE)

    assert not refused.allowed
    assert refused.retry_after_seconds == 0.75
    assert refused.reset_seconds == 4.75


def test_waiting_exactly_retry_after_is_enough_and_a_microsecond_less_is_not(
    backend: Backend,
) -> None:
    for _ in range(5):
        backend.limiter.check("tenant-a", PER_MINUTE)
    refused = backend.limiter.check("tenant-a", PER_MINUTE)

    backend.advance(refused.retry_after_seconds - 0.000001)
    early = backend.limiter.check("tenant-a", PER_MINUTE)
    backend.advance(0.000001)
    on_time = backend.limiter.check("tenant-a", PER_MINUTE)

    assert not early.allowed
    assert on_time.allowed


def test_a_client_waiting_the_retry_after_header_is_admitted(backend: Backend) -> None:
    limit = Limit(policy="writes", rate=7, period_seconds=3, burst=2)
    backend.limiter.check("tenant-a", limit)
    backend.limiter.check("tenant-a", limit)
    backend.advance(0.1)
    refused = backend.limiter.check("tenant-a", limit)

    backend.advance(retry_after_header(refused.retry_after_seconds))

    assert backend.limiter.check("tenant-a", limit).allowed


def test_tenants_and_policies_have_separate_buckets(backend: Backend) -> None:
    other_policy = Limit(policy="exports", rate=1, period_seconds=60, burst=1)
    for _ in range(5):
        backend.limiter.check("tenant-a", PER_MINUTE)

    assert not backend.limiter.check("tenant-a", PER_MINUTE).allowed
    assert backend.limiter.check("tenant-b", PER_MINUTE).allowed
    assert backend.limiter.check("tenant-a", other_policy).allowed


def test_a_costly_request_spends_several_units(backend: Backend) -> None:
    heavy = backend.limiter.check("tenant-a", PER_MINUTE, cost=4)
    refused = backend.limiter.check("tenant-a", PER_MINUTE, cost=2)
    light = backend.limiter.check("tenant-a", PER_MINUTE)

    assert heavy.remaining == 1
    assert not refused.allowed
    assert refused.remaining == 1
    assert light.allowed


def test_bad_arguments_are_refused_before_any_io(backend: Backend) -> None:
    with pytest.raises(ValueError, match="burst"):
        backend.limiter.check("tenant-a", PER_MINUTE, cost=6)
    with pytest.raises(ValueError, match="free of"):
        backend.limiter.check("tenant-{a}", PER_MINUTE)


# --- monthly quotas --------------------------------------------------------------------


def test_a_quota_counts_uses_and_refusals_do_not_count(backend: Backend) -> None:
    period, ends_at = month_period(backend.clock.now(), AUCKLAND)
    results = [
        backend.limiter.consume_quota("tenant-a", period, 3, ends_at.timestamp()) for _ in range(5)
    ]

    assert results == [(True, 1), (True, 2), (True, 3), (False, 3), (False, 3)]


def test_a_quota_resets_at_the_auckland_month_boundary_across_dst(backend: Backend) -> None:
    # 23:59:59 on 31 March NZDT; April runs into NZST, so it ends at 12:00 UTC, not 11:00.
    clock = FixedClock(datetime(2026, 3, 31, 10, 59, 59, tzinfo=UTC))
    limiter = backend.build(clock)
    march, march_ends = month_period(clock.now(), AUCKLAND)
    for _ in range(2):
        limiter.consume_quota("tenant-a", march, 2, march_ends.timestamp())
    exhausted = limiter.consume_quota("tenant-a", march, 2, march_ends.timestamp())

    clock.advance(timedelta(seconds=1))
    april, april_ends = month_period(clock.now(), AUCKLAND)
    fresh = limiter.consume_quota("tenant-a", april, 2, april_ends.timestamp())

    assert (march, april) == ("2026-03", "2026-04")
    assert exhausted == (False, 2)
    assert fresh == (True, 1)
    assert april_ends == datetime(2026, 4, 30, 12, tzinfo=UTC)


# --- concurrency slots -----------------------------------------------------------------


def test_concurrency_slots_fill_up_and_free_on_release(backend: Backend) -> None:
    first = backend.limiter.acquire("tenant-a", 2, 30)
    second = backend.limiter.acquire("tenant-a", 2, 30)
    full = backend.limiter.acquire("tenant-a", 2, 30)
    assert first is not None
    assert second is not None

    backend.limiter.release("tenant-a", first)
    again = backend.limiter.acquire("tenant-a", 2, 30)

    assert full is None
    assert again is not None
    assert len({first, second, again}) == 3


def test_an_expired_lease_frees_its_slot(backend: Backend) -> None:
    assert backend.limiter.acquire("tenant-a", 1, 30) is not None
    backend.advance(29.999999)
    still_held = backend.limiter.acquire("tenant-a", 1, 30)
    backend.advance(0.000001)

    assert still_held is None
    assert backend.limiter.acquire("tenant-a", 1, 30) is not None


def test_releasing_an_unknown_token_is_harmless(backend: Backend) -> None:
    token = backend.limiter.acquire("tenant-a", 1, 30)

    backend.limiter.release("tenant-a", "not-a-token")

    assert token is not None
    assert backend.limiter.acquire("tenant-a", 1, 30) is None


# --- memory store under threads --------------------------------------------------------


def test_the_memory_store_admits_exactly_the_burst_under_threads() -> None:
    limiter = MemoryRateLimiter(FixedClock(START))
    admitted: list[bool] = []
    barrier = threading.Barrier(8)

    def hammer() -> None:
        barrier.wait()
        admitted.extend(limiter.check("tenant-a", PER_MINUTE).allowed for _ in range(50))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(admitted) == PER_MINUTE.burst


def test_the_memory_store_forgets_only_expired_state_when_it_sweeps() -> None:
    clock = FixedClock(START)
    limiter = MemoryRateLimiter(clock)
    for _ in range(5):
        limiter.check("busy", PER_MINUTE)
    token = limiter.acquire("busy", 1, 600)
    for number in range(5000):  # a few thousand calls trigger a sweep
        limiter.check(f"idle-{number}", PER_MINUTE)
    still_busy = limiter.check("busy", PER_MINUTE)
    clock.advance(timedelta(seconds=10))

    for number in range(5000):
        limiter.check(f"later-{number}", PER_MINUTE)

    assert not still_busy.allowed
    assert limiter.check("idle-0", PER_MINUTE).remaining == 4
    assert token is not None
    assert limiter.acquire("busy", 1, 600) is None


# --- Redis specifics -------------------------------------------------------------------


def test_redis_keys_share_the_tenant_hash_tag_and_expire(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    limiter = RedisRateLimiter(redis_client, FixedClock(START), prefix=redis_prefix)
    limiter.check("tenant-a", PER_MINUTE)
    limiter.consume_quota("tenant-a", "2026-12", 10, (START + timedelta(days=2)).timestamp())
    limiter.acquire("tenant-a", 2, 30)

    keys = sorted(k.decode() for k in redis_client.scan_iter(match=f"{redis_prefix}:*"))
    ttls = {k.removeprefix(f"{redis_prefix}:"): redis_client.pttl(k) for k in keys}

    assert set(ttls) == {
        "{tenant-a}:default",
        "{tenant-a}:quota:2026-12",
        "{tenant-a}:concurrency:leases",
    }
    assert 0 < ttls["{tenant-a}:default"] <= 1000  # ceil(new_tat - now) = 1 s
    assert 2 * 86_400_000 - 5000 < ttls["{tenant-a}:quota:2026-12"] <= 2 * 86_400_000
    assert 25_000 < ttls["{tenant-a}:concurrency:leases"] <= 30_000


def test_redis_scripts_run_by_sha(redis_client: redis.Redis, redis_prefix: str) -> None:
    limiter = RedisRateLimiter(redis_client, prefix=redis_prefix)
    before = redis_client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)

    for _ in range(10):
        limiter.check("tenant-a", PER_MINUTE)

    after = redis_client.info("commandstats")["cmdstat_evalsha"]["calls"]
    assert after - before >= 10
    assert redis_client.script_exists(redis_client.register_script(GCRA_SCRIPT).sha) == [True]


class ForgetfulRedis(redis.Redis):
    """A client whose first EVALSHA reaches a server that has not loaded the script (a restart)."""

    forgot = False

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        if not self.forgot:
            self.forgot = True
            raise NoScriptError("NOSCRIPT No matching script. Please use EVAL.")
        return super().evalsha(sha, numkeys, *keys_and_args)


def test_a_script_missing_on_the_server_is_loaded_and_run(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    client = ForgetfulRedis(connection_pool=redis.ConnectionPool.from_url(REDIS_URL))
    limiter = RedisRateLimiter(client, FixedClock(START), prefix=redis_prefix)

    decision = limiter.check("tenant-a", PER_MINUTE)

    assert client.forgot
    assert decision.allowed
    assert redis_client.exists(f"{redis_prefix}:{{tenant-a}}:default") == 1
    client.close()


def server_microseconds(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1_000_000 + int(micros)


def test_without_a_clock_redis_uses_its_own_time(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    limiter = RedisRateLimiter(redis_client, prefix=redis_prefix)
    hourly = Limit(policy="default", rate=3, period_seconds=3600, burst=3)
    before = server_microseconds(redis_client)

    decisions = [limiter.check("tenant-a", hourly) for _ in range(4)]
    elapsed = (server_microseconds(redis_client) - before) / 1_000_000

    assert [d.allowed for d in decisions] == [True, True, True, False]
    # The fourth waits for the first unit to drip back: 1200 s after the first request.
    assert 1200 - elapsed <= decisions[-1].retry_after_seconds <= 1200
    stored = int(redis_client.get(f"{redis_prefix}:{{tenant-a}}:default") or 0)
    assert before + 3600 * 1_000_000 <= stored <= before + 3600 * 1_000_000 + elapsed * 1e6


def test_an_unreachable_redis_is_a_transient_error() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    limiter = RedisRateLimiter(dead, FixedClock(START), prefix="synchub:test:dead:rl")

    with pytest.raises(TransientError, match="unreachable"):
        limiter.check("tenant-a", PER_MINUTE)


steps = st.lists(st.tuples(st.integers(0, 3_000_000), st.integers(1, 4)), min_size=1, max_size=40)
limits = st.builds(
    Limit,
    policy=st.just("p"),
    rate=st.integers(1, 30),
    period_seconds=st.sampled_from([0.001, 1, 7, 60]),
    burst=st.integers(4, 12),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(limit=limits, script=steps)
def test_redis_and_memory_give_identical_decisions(
    redis_client: redis.Redis, limit: Limit, script: list[tuple[int, int]]
) -> None:
    prefix = f"synchub:test:{uuid.uuid4().hex}:rl"
    memory_clock, redis_clock = FixedClock(START), FixedClock(START)
    memory = MemoryRateLimiter(memory_clock)
    shared = RedisRateLimiter(redis_client, redis_clock, prefix=prefix)
    try:
        for gap_us, cost in script:
            for clock in (memory_clock, redis_clock):
                clock.advance(timedelta(microseconds=gap_us))
            assert memory.check("t", limit, cost=cost) == shared.check("t", limit, cost=cost)
    finally:
        delete_prefix(redis_client, prefix)


def test_epoch_microseconds_is_exact() -> None:
    at = datetime(2026, 12, 3, 1, 2, 3, 456789, tzinfo=UTC)

    assert epoch_microseconds(at) == 1_796_259_723_456_789
