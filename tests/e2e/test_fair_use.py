"""Fair use on /v1: headers on every answer, a throttle and a monthly quota per client."""

from __future__ import annotations

import base64
import math
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from synchub.core.clock import FixedClock
from synchub.db import Database
from tests.conftest import REPO
from tests.harness import Harness, make_harness

PLANS = """plans:
  default: {rate: 2, period_seconds: 60, burst: 2, monthly_quota: 5}
client_plans: {}
"""


@pytest.fixture
def tight(db: Database, tmp_path: Path) -> Iterator[tuple[Harness, dict[str, str]]]:
    """A hub whose default plan allows 2 requests a minute and 5 a month."""
    register = tmp_path / "register"
    shutil.copytree(REPO / "register", register)
    (register / "plans.yaml").write_text(PLANS)
    clock = FixedClock(datetime(2026, 4, 30, 11, 50, 0, tzinfo=UTC))  # 23:50 NZST, 30 April
    harness = make_harness(db, clock, data_dir=tmp_path, register_dir=register)
    assert harness.hub.auth is not None
    with db.write() as conn:
        client_id, secret = harness.hub.auth.create_client(
            conn, name="t", scopes=["read:customers"], workspace="live", actor="test"
        )
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    token = harness.http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    ).json()["access_token"]
    yield harness, {"Authorization": f"Bearer {token}"}
    harness.worker.stop()


def test_every_answer_says_how_much_room_is_left(tight: tuple[Harness, dict[str, str]]) -> None:
    harness, auth = tight
    reply = harness.http.get("/v1/customers", headers=auth)
    assert reply.status_code == 200
    # The throttle, then the monthly quota: April 2026 in Auckland is 30 days and an hour long
    # (DST ends on 5 April), and ends 10 minutes after the clock's 23:50 on 30 April.
    assert reply.headers["RateLimit-Policy"] == (
        '"default";q=2;w=60;synchub-burst=2, "default.monthly";q=5;w=2595600'
    )
    assert reply.headers["RateLimit"] == '"default";r=1;t=30, "default.monthly";r=4;t=600'
    assert "RateLimit-Limit" not in reply.headers  # never the legacy triple


def test_the_throttle_refuses_then_admits_after_retry_after(
    tight: tuple[Harness, dict[str, str]],
) -> None:
    harness, auth = tight
    assert [harness.http.get("/v1/customers", headers=auth).status_code
            for _ in range(2)] == [200, 200]  # fmt: skip
    refused = harness.http.get("/v1/customers", headers=auth)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "rate_limited"
    assert "throttle" in refused.json()["detail"]
    assert refused.json()["layer"] == "throttle"
    wait = int(refused.headers["Retry-After"])
    assert wait >= 1
    assert refused.headers["RateLimit"].startswith(f'"default";r=0;t={wait},')
    assert refused.headers["Cache-Control"] == "no-store"
    harness.clock.advance(timedelta(seconds=wait))  # a client that waits exactly Retry-After
    assert harness.http.get("/v1/customers", headers=auth).status_code == 200


def test_the_monthly_quota_resets_at_the_month_boundary_in_auckland(
    tight: tuple[Harness, dict[str, str]],
) -> None:
    harness, auth = tight
    for _ in range(5):
        assert harness.http.get("/v1/customers", headers=auth).status_code == 200
        harness.clock.advance(timedelta(seconds=1))  # within the minute: throttle allows 2
        harness.clock.advance(timedelta(seconds=30))
    over = harness.http.get("/v1/customers", headers=auth)
    assert over.status_code == 429
    assert "quota" in over.json()["detail"]
    assert over.json()["layer"] == "quota"
    month_ends = datetime(2026, 4, 30, 12, 0, tzinfo=UTC)  # 1 May 00:00 in Auckland (NZST)
    wait = math.ceil((month_ends - harness.clock.now()).total_seconds())
    assert int(over.headers["Retry-After"]) == wait
    assert over.headers["RateLimit"].endswith(f'"default.monthly";r=0;t={wait}')
    harness.clock.advance(month_ends - harness.clock.now())
    assert harness.http.get("/v1/customers", headers=auth).status_code == 200


def test_token_requests_are_limited_per_client_id(harness: Harness) -> None:
    basic = base64.b64encode(b"cli_unknown:guess").decode()
    statuses = [harness.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                                  headers={"Authorization": f"Basic {basic}"}).status_code
                for _ in range(21)]  # fmt: skip
    assert statuses[:20] == [401] * 20
    assert statuses[20] == 429


def test_a_refused_scope_still_carries_the_headers_and_spends_room(
    tight: tuple[Harness, dict[str, str]],
) -> None:
    harness, auth = tight
    forbidden = harness.http.get("/v1/deliveries", headers=auth)  # needs read:deliveries
    assert forbidden.status_code == 403
    assert forbidden.headers["RateLimit"].startswith('"default";r=1;')
    assert "RateLimit-Policy" in forbidden.headers
    # A client that keeps calling what it may not is throttled like any other.
    assert harness.http.get("/v1/deliveries", headers=auth).status_code == 403
    assert harness.http.get("/v1/deliveries", headers=auth).status_code == 429
