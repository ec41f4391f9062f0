"""A new user's review of fair use (issue 7): a 429 names whose limit it is (a client's own
override or its plan's), GET /v1/usage answers a client over its quota, the OAuth budget's
429 has the shape of the /v1 ones, and `synchub usage` prints whole ids and the same
`resets_at` as the API. Memory and Redis backends, SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from synchub.cli import app
from synchub.config import Settings
from synchub.core.clock import FixedClock, SystemClock
from synchub.db import Database
from synchub.ratelimit.model import Limit, QuotaPeriod, epoch_microseconds, month_window
from synchub.ratelimit.service import tenant_key, usage_body, usage_report
from synchub.ratelimit.store import DEFAULT_PREFIX, RedisRateLimiter
from tests.conftest import REPO
from tests.e2e import test_fair_use_layers as layers
from tests.e2e.test_fair_use_layers import DECEMBER_ENDS, Fair
from tests.e2e.test_usage_cli import hub_env, make_clients, shared  # noqa: F401 (fixtures)

# The reviewer's register: roomy is on the default plan with its own monthly quota of 5.
PLANS = """plans:
  default: {{rate: 600, period_seconds: 60, burst: 300, monthly_quota: 100000, concurrency: 1}}
  tight:
    {{rate: 2, period_seconds: 60, burst: 2, monthly_quota: 4, concurrency: 1,
     token: {{rate: 1, period_seconds: 60, burst: 2}}}}
client_plans:
  {tight}: tight
client_overrides:
  {roomy}: {{monthly_quota: 5}}
"""
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(params=["memory", "redis"])
def fair(
    request: pytest.FixtureRequest,
    db: Database,
    clock: FixedClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Fair]:
    """The fair-use hub of test_fair_use_layers, with this module's plans."""
    monkeypatch.setattr(layers, "PLANS", PLANS)
    yield from layers.fair.__wrapped__(request, db, clock, tmp_path)


def seconds_to_new_year(fair: Fair) -> int:
    return math.ceil((DECEMBER_ENDS - fair.harness.clock.now()).total_seconds())


# --- 1. whose limit ----------------------------------------------------------------------


def test_a_429_names_the_clients_own_quota_not_its_plans(fair: Fair) -> None:
    assert [fair.get("roomy", "/v1/customers").status_code for _ in range(5)] == [200] * 5
    over = fair.get("roomy", "/v1/customers")

    assert over.status_code == 429
    problem = over.json()
    assert problem["layer"] == "quota"
    detail = problem["detail"]
    assert detail.startswith("this client's monthly quota of 5 requests (set in client_overrides")
    assert "default plan's monthly quota" not in detail
    assert "until 2026-12-31T11:00:00Z" in detail
    assert int(over.headers["Retry-After"]) == seconds_to_new_year(fair)


def test_a_429_from_a_plans_own_limits_names_the_plan(fair: Fair) -> None:
    assert [fair.get("tight", "/v1/customers").status_code for _ in range(3)] == [200, 200, 429]
    throttled = fair.get("tight", "/v1/customers").json()["detail"]
    for _ in range(2):
        fair.harness.clock.advance(timedelta(seconds=60))
        assert fair.get("tight", "/v1/customers").status_code == 200
    fair.harness.clock.advance(timedelta(seconds=60))
    over = fair.get("tight", "/v1/customers").json()

    assert throttled.startswith("over the tight plan's rate of 2 requests per 60 s")
    assert "client_overrides" not in throttled
    assert over["layer"] == "quota"
    assert over["detail"].startswith("the tight plan's monthly quota of 4 requests is used up")


def test_usage_names_the_limits_a_client_override_sets(fair: Fair) -> None:
    roomy = fair.get("roomy", "/v1/usage").json()["clients"][0]
    tight = fair.get("tight", "/v1/usage").json()["clients"][0]

    assert (roomy["plan"], roomy["overrides"]) == ("default", ["monthly_quota"])
    assert roomy["quota"] == {"limit": 5, "used": 0, "remaining": 5}
    assert (tight["plan"], tight["overrides"]) == ("tight", [])
    workspace = fair.get("admin", "/v1/usage").json()["clients"]
    assert {c["client_id"]: c["overrides"] for c in workspace}[fair.ids["roomy"]] == [
        "monthly_quota"
    ]


# --- 2. usage is exempt from the quota -------------------------------------------------


def test_a_client_over_its_quota_can_still_read_its_usage(fair: Fair) -> None:
    for _ in range(5):
        assert fair.get("roomy", "/v1/customers").status_code == 200
    assert fair.get("roomy", "/v1/customers").status_code == 429

    replies = [fair.get("roomy", "/v1/usage") for _ in range(3)]

    assert [r.status_code for r in replies] == [200, 200, 200]
    reset = seconds_to_new_year(fair)
    reply = replies[-1]
    assert reply.headers["RateLimit-Policy"].endswith('"default.monthly";q=5;w=2678400')
    assert reply.headers["RateLimit"].startswith('"default";r=')
    assert reply.headers["RateLimit"].endswith(f'"default.monthly";r=0;t={reset}')
    body = reply.json()
    assert body["resets_at"] == "2026-12-31T11:00:00Z"
    mine = body["clients"][0]
    assert mine["quota"] == {"limit": 5, "used": 5, "remaining": 0}  # usage reads not counted
    assert mine["calls_admitted"] == 5
    assert mine["rejections"] == {"throttle": 0, "quota": 1, "concurrency": 0}
    assert fair.get("roomy", "/v1/customers").status_code == 429  # the quota still holds


def test_usage_still_passes_the_clients_throttle(fair: Fair) -> None:
    """tight: 2 at once, then one every 30 s, shared by usage reads and every other call."""
    first = [fair.get("tight", "/v1/usage") for _ in range(2)]
    throttled = fair.get("tight", "/v1/usage")
    listing = fair.get("tight", "/v1/customers")

    assert [r.status_code for r in first] == [200, 200]
    assert throttled.status_code == 429
    assert throttled.json()["layer"] == "throttle"
    wait = int(throttled.headers["Retry-After"])
    assert throttled.headers["RateLimit"].startswith(f'"tight";r=0;t={wait}')
    assert listing.status_code == 429  # usage reads spent the same throttle
    fair.harness.clock.advance(timedelta(seconds=wait))
    again = fair.get("tight", "/v1/usage")
    assert again.status_code == 200
    assert again.json()["clients"][0]["quota"]["used"] == 0


# --- 3. the token layer's 429 -------------------------------------------------------------


def test_the_token_budgets_429_is_the_fair_use_problem(fair: Fair) -> None:
    basic = base64.b64encode(f"{fair.ids['tight']}:{fair.secrets['tight']}".encode()).decode()
    headers = {"Authorization": f"Basic {basic}", "traceparent": TRACEPARENT}
    form = {"grant_type": "client_credentials"}
    # The fixture asked once; the tight plan allows 2 token requests at once, then 1 a minute.
    assert fair.harness.http.post("/oauth/token", data=form, headers=headers).status_code == 200
    refused = fair.harness.http.post("/oauth/token", data=form, headers=headers)

    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["Retry-After"] == "60"
    assert refused.headers["Cache-Control"] == "no-store"
    assert refused.headers["RateLimit-Policy"] == '"token";q=1;w=60;synchub-burst=2'
    assert refused.headers["RateLimit"] == '"token";r=0;t=60'
    problem = refused.json()
    assert problem["layer"] == "token"
    assert problem["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert (problem["status"], problem["code"]) == (429, "rate_limited")
    assert problem["type"] == "https://synchub.dev/problems/rate-limited"


# --- 4. resets_at is written the same everywhere -----------------------------------------


def test_the_cli_and_the_api_write_resets_at_alike(fair: Fair) -> None:
    api = fair.get("roomy", "/v1/usage").json()
    hub = fair.harness.hub
    cli = usage_body(usage_report(hub.ratelimiter, hub.register, workspace="live", clients=[],
                                  now=hub.clock.now()))  # fmt: skip

    assert api["resets_at"] == "2026-12-31T11:00:00Z"  # as every /v1 timestamp
    assert cli["resets_at"] == api["resets_at"]


def test_usage_prints_whole_ids_at_80_columns(
    hub_env: Settings,  # noqa: F811 (fixture)
    shared: redis.Redis,  # noqa: F811 (fixture)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    busy, idle = make_clients(hub_env, "busy", "idle")
    register = tmp_path / "register"
    shutil.copytree(REPO / "register", register)
    plans = register / "plans.yaml"
    plans.write_text(
        plans.read_text().replace(
            "client_overrides: {}", f"client_overrides:\n  {busy}: {{monthly_quota: 5}}"
        )
    )
    monkeypatch.setenv("SYNCHUB_REGISTER_DIR", str(register))
    month = month_window(SystemClock().now(), "Pacific/Auckland")
    period = QuotaPeriod(month.period, 5, epoch_microseconds(month.ends_at))
    limiter = RedisRateLimiter(shared, prefix=DEFAULT_PREFIX)
    throttle = Limit(policy="default", rate=600, period_seconds=60, burst=60)
    try:
        for _ in range(2):
            limiter.admit(tenant_key("live", busy), throttle, period)
        table = CliRunner().invoke(app, ["usage"], env={"COLUMNS": "80"})
        as_json = CliRunner().invoke(app, ["usage", "--json"])
    finally:
        for id_ in (busy, idle):
            for key in shared.scan_iter(match=f"{DEFAULT_PREFIX}:{{live/{id_}}}:*"):
                shared.delete(key)

    assert table.exit_code == 0, table.output
    assert as_json.exit_code == 0, as_json.output
    resets_at = month.ends_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert json.loads(as_json.stdout)["resets_at"] == resets_at
    out = table.stdout
    assert "…" not in out
    assert f"quotas reset at {resets_at}" in out
    blocks = {b.splitlines()[0]: b for b in out.split("\n\n")[1:]}
    assert set(blocks) == {f"{busy}  busy", f"{idle}  idle"}
    assert re.search(r"plan +default \(client_overrides: monthly_quota\)", blocks[f"{busy}  busy"])
    assert re.search(r"quota +2 of 5 used, 3 left", blocks[f"{busy}  busy"])
    assert re.search(r"plan +default\n", blocks[f"{idle}  idle"])
    assert all(len(line) <= 80 for line in out.splitlines())
