"""Four OS processes hammering one tenant in Redis never get more than the limits allow, and
the usage counters they share add up exactly."""

from __future__ import annotations

import multiprocessing
import os
import uuid
from collections.abc import Iterator
from multiprocessing.synchronize import Barrier

import pytest
import redis

from synchub.ratelimit.model import Limit, QuotaPeriod
from synchub.ratelimit.store import RedisRateLimiter

REDIS_URL = os.environ.get("SYNCHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PROCESSES = 4
ATTEMPTS = 300
# 40 per hour with a burst of 40: one more unit drips back only after 90 s.
HOURLY = Limit(policy="default", rate=40, period_seconds=3600, burst=40)
QUOTA = 150
SLOTS = 5
# Throttle and quota admitted together, counted in the period's usage: 40 at once, 100 a month.
MONTH = QuotaPeriod("2026-12", 100, 4_102_444_800 * 1_000_000)


def server_seconds(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return int(seconds) + int(micros) / 1_000_000


def hammer(
    prefix: str, barrier: Barrier, results: multiprocessing.Queue[tuple[int, int, int, int]]
) -> None:
    """One process: ATTEMPTS checks, quota uses and slot grabs, all on the real Redis clock."""
    client = redis.Redis.from_url(REDIS_URL)
    limiter = RedisRateLimiter(client, prefix=prefix)
    barrier.wait()
    admitted = sum(limiter.check("tenant-a", HOURLY).allowed for _ in range(ATTEMPTS))
    used = sum(
        limiter.consume_quota("tenant-a", "2026-12", QUOTA, 4_102_444_800)[0]
        for _ in range(ATTEMPTS)
    )
    slots = sum(limiter.acquire("tenant-a", SLOTS, 600) is not None for _ in range(ATTEMPTS))
    both = sum(limiter.admit("tenant-b", HOURLY, MONTH).admitted for _ in range(ATTEMPTS))
    results.put((admitted, used, slots, both))
    client.close()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own, deleted afterwards; skips if Redis is unreachable."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"Redis is unreachable at {REDIS_URL} ({exc}); set SYNCHUB_TEST_REDIS_URL")
    prefix = f"synchub:test:{uuid.uuid4().hex}:rl"
    yield prefix
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)
    client.close()


@pytest.mark.slow
def test_four_processes_together_never_exceed_the_limits(redis_prefix: str) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results: multiprocessing.Queue[tuple[int, int, int, int]] = context.Queue()
    workers = [
        context.Process(target=hammer, args=(redis_prefix, barrier, results))
        for _ in range(PROCESSES)
    ]
    client = redis.Redis.from_url(REDIS_URL)
    started = server_seconds(client)

    for worker in workers:
        worker.start()
    counts = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    elapsed = server_seconds(client) - started
    usage = RedisRateLimiter(client, prefix=redis_prefix).usage("tenant-b", MONTH.period)
    client.close()

    admitted, used, slots, both = (sum(column) for column in zip(*counts, strict=True))
    refill = int(HOURLY.rate * elapsed / HOURLY.period_seconds)
    assert all(worker.exitcode == 0 for worker in workers)
    assert HOURLY.burst <= admitted <= HOURLY.burst + refill
    assert used == QUOTA
    assert slots == SLOTS
    assert HOURLY.burst <= both <= HOURLY.burst + refill
    assert usage.admitted == usage.quota_used == both
    assert usage.admitted + usage.rejected_throttle + usage.rejected_quota == PROCESSES * ATTEMPTS
