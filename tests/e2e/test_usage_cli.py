"""`synchub usage` reads the counters every process shares in Redis; with the in-memory default
it explains why it cannot and where to look instead."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from synchub.bootstrap import build_authorization_server
from synchub.cli import app
from synchub.config import Settings
from synchub.core.clock import SystemClock
from synchub.db import make_database
from synchub.migrations.runner import upgrade
from synchub.ratelimit.model import Limit, QuotaPeriod, epoch_microseconds, month_window
from synchub.ratelimit.service import tenant_key
from synchub.ratelimit.store import DEFAULT_PREFIX, RedisRateLimiter
from tests.conftest import REPO

REDIS_URL = os.environ.get("SYNCHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TIGHT = Limit(policy="default", rate=600, period_seconds=60, burst=3)


@pytest.fixture
def hub_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for a fresh SQLite store in a temp directory, as the CLI will read them."""
    monkeypatch.setenv("SYNCHUB_DATA_DIR", str(tmp_path / "hub"))
    monkeypatch.setenv("SYNCHUB_REGISTER_DIR", str(REPO / "register"))
    monkeypatch.setenv("SYNCHUB_LOG_LEVEL", "ERROR")
    monkeypatch.delenv("SYNCHUB_DATABASE_URL", raising=False)
    monkeypatch.delenv("SYNCHUB_KEY_ENCRYPTION_KEY", raising=False)
    monkeypatch.delenv("SYNCHUB_REDIS_URL", raising=False)
    (tmp_path / "hub").mkdir()
    return Settings()


@pytest.fixture
def shared(hub_env: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """The Redis every process of this hub shares (the CLI's default key prefix)."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"Redis is unreachable at {REDIS_URL} ({exc})")
    monkeypatch.setenv("SYNCHUB_REDIS_URL", REDIS_URL)
    yield client
    client.close()


def make_clients(settings: Settings, *names: str) -> list[str]:
    db = make_database(settings.resolved_database_url())
    upgrade(db)
    server = build_authorization_server(settings, db, SystemClock())
    with db.write() as conn:
        ids = [server.create_client(conn, name=n, scopes=["read:usage"], workspace="live",
                                    actor="test")[0] for n in names]  # fmt: skip
    db.dispose()
    return ids


def test_usage_prints_every_clients_counters_from_redis(
    hub_env: Settings, shared: redis.Redis
) -> None:
    busy, idle = make_clients(hub_env, "busy", "idle")
    # What an API process would have counted this month. The CLI reads the system clock (it
    # has no other), so the counters go into the month the system clock is in.
    month = month_window(SystemClock().now(), "Pacific/Auckland")
    period = QuotaPeriod(month.period, 1_000_000, epoch_microseconds(month.ends_at))
    limiter = RedisRateLimiter(shared, prefix=DEFAULT_PREFIX)
    try:
        outcomes = [limiter.admit(tenant_key("live", busy), TIGHT, period) for _ in range(5)]
        result = CliRunner().invoke(app, ["usage", "--json"])
        table = CliRunner().invoke(app, ["usage", "--client", busy])
    finally:
        for id_ in (busy, idle):
            for key in shared.scan_iter(match=f"{DEFAULT_PREFIX}:{{live/{id_}}}:*"):
                shared.delete(key)

    assert [o.admitted for o in outcomes] == [True] * 3 + [False] * 2
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert (body["workspace"], body["period"]) == ("live", month.period)
    by_id = {c["client_id"]: c for c in body["clients"]}
    assert set(by_id) == {busy, idle}
    assert by_id[busy]["calls_admitted"] == 3
    assert by_id[busy]["rejections"] == {"throttle": 2, "quota": 0, "concurrency": 0}
    assert by_id[busy]["quota"] == {"limit": 1_000_000, "used": 3, "remaining": 999_997}
    assert by_id[idle]["calls_admitted"] == 0
    assert table.exit_code == 0, table.output
    assert "busy" in table.stdout
    assert "idle" not in table.stdout


def test_without_redis_usage_says_where_the_counters_are(hub_env: Settings) -> None:
    result = CliRunner().invoke(app, ["usage"])

    assert result.exit_code == 2
    assert "GET /v1/usage" in result.output
    assert "SYNCHUB_REDIS_URL" in result.output
