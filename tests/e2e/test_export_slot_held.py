"""An export holds its concurrency slot for as long as its stream is open, also when the
client stops reading: the lease is renewed beside the stream, not only when the next page is
produced. A disconnect still gives the slot back at once, and a process that dies stops
renewing, so its slots free when their lease runs out. Memory and Redis backends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
import redis

from synchub.api import fair_use
from synchub.api.fair_use import SLOT_LEASE_SECONDS, Slot
from synchub.core.clock import FixedClock
from synchub.db import Database
from synchub.ratelimit.service import tenant_key
from synchub.ratelimit.store import MemoryRateLimiter, RedisRateLimiter
from tests.e2e import test_fair_use_layers as layers
from tests.e2e.asgi import AsgiCall, asgi_request
from tests.e2e.test_fair_use_layers import REDIS_URL, Fair, assert_concurrency_refusal

EXPORT = "/v1/exports/customers"


@pytest.fixture(autouse=True)
def quick_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Streams look at their lease every 20 ms (real time) instead of every second."""
    monkeypatch.setattr(fair_use, "SLOT_CHECK_SECONDS", 0.02)


@pytest.fixture(params=["memory", "redis"])
def fair(
    request: pytest.FixtureRequest, db: Database, clock: FixedClock, tmp_path: Path
) -> Iterator[Fair]:
    """The fair-use hub of test_fair_use_layers (one client per role), on both backends."""
    yield from layers.fair.__wrapped__(request, db, clock, tmp_path)


def in_use(fair: Fair, who: str) -> int:
    usage = fair.get(who, "/v1/usage").json()["clients"][0]
    count: int = usage["concurrency"]["in_use"]
    return count


def test_a_stalled_export_keeps_its_slot_for_as_long_as_its_stream_is_open(fair: Fair) -> None:
    """The reviewer's case: two stalled streams against a limit of two, then past the lease."""
    fair.seed_customers(3)
    app = fair.harness.http.app
    roomy = fair.auth["roomy"]  # concurrency 2

    async def scenario() -> None:
        stalled = [AsgiCall(app, EXPORT, roomy) for _ in range(2)]
        async with anyio.create_task_group() as tasks:
            for export in stalled:
                tasks.start_soon(export.run)
                await export.chunk_seen.wait()  # first page sent; the client reads no further
            for _ in range(6):  # three leases' worth, in steps shorter than a lease
                fair.harness.clock.advance(timedelta(seconds=SLOT_LEASE_SECONDS / 2.5))
                await anyio.sleep(0.2)  # the streams' renewers look at the clock
            third = await asgi_request(app, EXPORT, roomy)
            assert third[0] == 429, "the stalled streams lost their slots"
            assert b'"concurrency"' in third[2]
            status, _, body = await asgi_request(app, "/v1/usage", roomy)
            assert status == 200
            assert b'"in_use":2' in body.replace(b" ", b"")
            for export in stalled:
                export.open()
        assert [e.status for e in stalled] == [200, 200]
        assert all(len(bytes(e.body).splitlines()) == 3 for e in stalled)

    anyio.run(scenario)
    fair.harness.clock.advance(timedelta(seconds=1))  # roomy's burst is 3: let it refill
    assert in_use(fair, "roomy") == 0
    assert fair.get("roomy", EXPORT).status_code == 200


def test_a_stalled_export_gives_its_slot_back_at_once_when_the_client_goes_away(
    fair: Fair,
) -> None:
    fair.seed_customers(2)
    app = fair.harness.http.app
    reader = fair.auth["reader"]  # concurrency 1
    key = tenant_key("live", fair.ids["reader"])
    limiter = fair.harness.hub.ratelimiter
    assert limiter is not None

    released: list[float] = []
    give_back = limiter.release

    def timed_release(key: str, token: str) -> None:
        released.append(time.monotonic())
        give_back(key, token)

    limiter.release = timed_release  # type: ignore[method-assign]

    async def scenario() -> float:
        export = AsgiCall(app, EXPORT, reader)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(export.run)
            await export.chunk_seen.wait()
            fair.harness.clock.advance(timedelta(seconds=SLOT_LEASE_SECONDS * 0.9))
            await anyio.sleep(0.2)
            fair.harness.clock.advance(timedelta(seconds=SLOT_LEASE_SECONDS * 0.9))
            assert_concurrency_refusal(*await asgi_request(app, EXPORT, reader))
            gone_at = time.monotonic()
            export.go_away()
        assert export.ended_by is not None
        [at] = released
        return at - gone_at

    assert anyio.run(scenario) < 0.5  # the slot went back with the stream, not with its lease
    assert limiter.usage(key, "2026-12").slots_in_use == 0
    fair.harness.clock.advance(timedelta(seconds=1))
    assert fair.get("reader", EXPORT).status_code == 200


def test_a_released_slot_is_never_renewed_back(fair: Fair) -> None:
    limiter = fair.harness.hub.ratelimiter
    assert limiter is not None
    key = tenant_key("live", fair.ids["reader"])
    token = limiter.acquire(key, 1, SLOT_LEASE_SECONDS)
    slot = Slot(limiter, key, token, fair.harness.clock)
    fair.harness.clock.advance(timedelta(seconds=SLOT_LEASE_SECONDS / 2))
    slot.release()
    slot.renew_if_due()
    assert not slot.held
    assert limiter.acquire(key, 1, SLOT_LEASE_SECONDS) is not None  # free


def test_the_renewer_keeps_only_its_own_slot_and_stops_when_released() -> None:
    """In memory, on the real clock with a 0.6 s lease: renewals hold the slot well past its
    lease; after release nothing renews it, and a slot nobody renews (a crashed holder)
    frees when its lease runs out."""
    from synchub.core.clock import SystemClock

    clock = SystemClock()
    limiter = MemoryRateLimiter(clock)
    lease = 0.6

    async def scenario() -> None:
        kept = Slot(limiter, "t:kept", limiter.acquire("t:kept", 1, lease), clock,
                    lease_seconds=lease)  # fmt: skip
        orphan = limiter.acquire("t:orphan", 1, lease)  # its holder crashed: no renewer
        assert orphan is not None
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(kept.keep_renewed)
            await anyio.sleep(lease * 3)
            assert limiter.acquire("t:kept", 1, lease) is None  # still held
            assert limiter.acquire("t:orphan", 1, lease) is not None  # lease ran out
            kept.release()
            await anyio.sleep(0.1)
            assert tasks.cancel_scope.cancel_called is False  # it ended on its own
        assert limiter.acquire("t:kept", 1, lease) is not None

    anyio.run(scenario)


CRASHING_HOLDER = """
import asyncio, sys
import redis
from synchub.api import fair_use
from synchub.api.fair_use import Slot
from synchub.core.clock import SystemClock
from synchub.ratelimit.store import RedisRateLimiter

fair_use.SLOT_CHECK_SECONDS = 0.05
url, prefix, key, lease = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
limiter = RedisRateLimiter(redis.Redis.from_url(url), prefix=prefix)  # Redis TIME
slot = Slot(limiter, key, limiter.acquire(key, 1, lease), SystemClock(), lease_seconds=lease)
assert slot.held
print("held", flush=True)
asyncio.run(slot.keep_renewed())
"""


def test_a_process_killed_while_holding_a_renewed_slot_frees_it_when_its_lease_ends() -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"Redis is unreachable at {REDIS_URL} ({exc})")
    prefix, key, lease = f"synchub:test:{uuid.uuid4().hex}:rl", "t:holder", 1.5
    limiter = RedisRateLimiter(client, prefix=prefix)
    holder = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", CRASHING_HOLDER, REDIS_URL, prefix, key, str(lease)],
        stdout=subprocess.PIPE,
        env={**os.environ, "SYNCHUB_LOG_LEVEL": "ERROR"},
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"held"
        time.sleep(lease * 2.5)
        assert limiter.acquire(key, 1, lease) is None  # renewed past two leases
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        killed_at = time.monotonic()
        while limiter.acquire(key, 1, lease) is None:
            assert time.monotonic() - killed_at < lease + 1.0, "a dead process kept its slot"
            time.sleep(0.05)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
        for name in client.scan_iter(match=f"{prefix}:*"):
            client.delete(name)
        client.close()
