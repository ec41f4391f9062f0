"""Fair use beyond the throttle: concurrency slots for exports and bulk replays, per-client
overrides, the token and webhook limits, and GET /v1/usage. Each scenario runs on both
rate-limit backends (memory, and Redis on the test clock) and both databases."""

from __future__ import annotations

import base64
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from synchub.api.fair_use import SLOT_LEASE_SECONDS
from synchub.bootstrap import build_authorization_server
from synchub.config import Settings
from synchub.core.clock import FixedClock
from synchub.db import Database
from synchub.ratelimit.service import tenant_key
from synchub.ratelimit.store import RedisRateLimiter
from tests.conftest import REPO
from tests.e2e.asgi import AsgiCall, asgi_request
from tests.harness import Harness, make_harness

REDIS_URL = os.environ.get("SYNCHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PLANS = """plans:
  default: {{rate: 600, period_seconds: 60, burst: 300, monthly_quota: 100000, concurrency: 1}}
  tight:
    {{rate: 2, period_seconds: 60, burst: 2, monthly_quota: 4, concurrency: 1,
     token: {{rate: 1, period_seconds: 60, burst: 2}}}}
client_plans:
  {tight}: tight
client_overrides:
  {roomy}: {{burst: 3, concurrency: 2}}
webhook_limits:
  stripe: {{rate: 1, period_seconds: 60, burst: 2}}
"""
CLIENTS = {  # name -> (workspace, scopes)
    "writer": ("live", "write:customers read:customers read:usage"),
    "reader": ("live", "read:customers read:usage admin:deliveries"),
    "tight": ("live", "read:customers read:usage"),
    "roomy": ("live", "read:customers read:usage"),
    "admin": ("live", "read:usage admin:audit"),
    "sandbox_admin": ("sandbox-acme", "read:usage admin:audit"),
}
EVENT = REPO / "tests/data/stripe/events/customer.created.json"
DECEMBER_ENDS = datetime(2026, 12, 31, 11, 0, tzinfo=UTC)  # 1 January 00:00 NZDT


@dataclass
class Fair:
    """A hub with one client per role and a bearer header for each."""

    harness: Harness
    ids: dict[str, str]
    secrets: dict[str, str]
    auth: dict[str, dict[str, str]]

    def get(self, who: str, path: str) -> Any:
        return self.harness.http.get(path, headers=self.auth[who])

    def token_request(self, who: str) -> Any:
        basic = base64.b64encode(f"{self.ids[who]}:{self.secrets[who]}".encode()).decode()
        return self.harness.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                                      headers={"Authorization": f"Basic {basic}"})  # fmt: skip

    def seed_customers(self, count: int) -> list[str]:
        ids = []
        for n in range(count):
            body = {"external_id": f"p{n}", "email": f"p{n}@kowhai.nz", "name": f"Customer {n}"}
            reply = self.harness.http.post("/v1/customers", json=body, headers=self.auth["writer"])
            assert reply.status_code == 201, reply.text
            ids.append(reply.json()["id"])
        return sorted(ids)

    def hold_slot(self, who: str) -> str | None:
        """Take a slot as a process that then crashed would: never given back."""
        limiter = self.harness.hub.ratelimiter
        assert limiter is not None
        return limiter.acquire(tenant_key("live", self.ids[who]), 1, SLOT_LEASE_SECONDS)


@pytest.fixture(params=["memory", "redis"])
def fair(
    request: pytest.FixtureRequest, db: Database, clock: FixedClock, tmp_path: Path
) -> Iterator[Fair]:
    settings = Settings(data_dir=tmp_path, database_url="sqlite://")
    server = build_authorization_server(settings, db, clock)
    with db.write() as conn:
        made = {name: server.create_client(conn, name=name, scopes=scopes.split(),
                                           workspace=workspace, actor="test")
                for name, (workspace, scopes) in CLIENTS.items()}  # fmt: skip
    register = tmp_path / "register"
    shutil.copytree(REPO / "register", register)
    ids = {name: client_id for name, (client_id, _) in made.items()}
    (register / "plans.yaml").write_text(PLANS.format(tight=ids["tight"], roomy=ids["roomy"]))
    harness = make_harness(db, clock, data_dir=tmp_path, register_dir=register)
    client, prefix = None, f"synchub:test:{uuid.uuid4().hex}:rl"
    if request.param == "redis":
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        try:
            client.ping()
        except redis.ConnectionError as exc:
            pytest.skip(f"Redis is unreachable at {REDIS_URL} ({exc})")
        harness.hub.ratelimiter = RedisRateLimiter(client, clock, prefix=prefix)
    fair = Fair(harness, ids, {n: secret for n, (_, secret) in made.items()}, {})
    for name in CLIENTS:
        reply = fair.token_request(name)
        assert reply.status_code == 200, reply.text
        fair.auth[name] = {"Authorization": f"Bearer {reply.json()['access_token']}"}
    yield fair
    harness.worker.stop()
    harness.http.close()
    if client is not None:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
        client.close()


def lines(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.decode().splitlines()]


def assert_concurrency_refusal(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 429
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert (problem["code"], problem["layer"]) == ("rate_limited", "concurrency")
    assert 1 <= int(headers["retry-after"]) <= 5
    assert headers["ratelimit-policy"].startswith('"default";q=600;w=60')


# --- exports and concurrency slots ------------------------------------------------------


def test_a_long_export_streams_every_record_and_renews_its_slot(fair: Fair) -> None:
    """Two pages: between them the lease is renewed, so the slot outlives its first lease."""
    ids = fair.seed_customers(130)
    one = fair.get("writer", f"/v1/customers/{ids[7]}").json()
    app = fair.harness.http.app

    async def scenario() -> None:
        export = AsgiCall(app, "/v1/exports/customers", fair.auth["reader"])
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(export.run)
            await export.chunk_seen.wait()  # the first page is out; the stream waits
            fair.harness.clock.advance(timedelta(seconds=50))
            export.let_one_through()  # the second page is read: the lease is renewed
            await export.chunk_seen.wait()
            fair.harness.clock.advance(timedelta(seconds=30))  # past the first lease
            other = await asgi_request(app, "/v1/exports/customers", fair.auth["reader"])
            assert_concurrency_refusal(*other)
            export.open()
        assert export.status == 200
        assert export.headers["content-type"] == "application/x-ndjson"
        assert export.headers["cache-control"] == "no-store"
        assert export.headers["ratelimit-policy"].startswith('"default";q=600;w=60')
        assert export.headers["ratelimit"].startswith('"default";r=')
        records = lines(bytes(export.body))
        assert [r["id"] for r in records] == ids
        assert records[7] == {k: v for k, v in one.items() if k != "request_id"}

    anyio.run(scenario)
    usage = fair.get("reader", "/v1/usage").json()["clients"][0]
    assert usage["concurrency"] == {"limit": 1, "in_use": 0}
    assert usage["rejections"]["concurrency"] == 1


def test_while_an_export_runs_the_clients_other_expensive_work_waits(fair: Fair) -> None:
    fair.seed_customers(3)
    app = fair.harness.http.app
    reader = fair.auth["reader"]

    async def scenario() -> None:
        export = AsgiCall(app, "/v1/exports/customers", reader)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(export.run)
            await export.chunk_seen.wait()
            assert_concurrency_refusal(*await asgi_request(app, "/v1/exports/customers", reader))
            replay = await asgi_request(app, "/v1/dead-letters/replay", reader, method="POST",
                                        body=b'{"destination": "xero"}')  # fmt: skip
            assert_concurrency_refusal(*replay)
            status, _, body = await asgi_request(app, "/v1/usage", reader)
            assert status == 200
            assert json.loads(body)["clients"][0]["concurrency"] == {"limit": 1, "in_use": 1}
            mine = await asgi_request(app, "/v1/exports/customers", fair.auth["writer"])
            assert mine[0] == 200  # slots are per client
            export.open()
        assert len(lines(bytes(export.body))) == 3

    anyio.run(scenario)
    assert fair.get("reader", "/v1/exports/customers").status_code == 200  # given back


@pytest.mark.parametrize("how", ["disconnect message", "send fails"])
def test_a_client_that_goes_away_mid_stream_gives_its_slot_back(fair: Fair, how: str) -> None:
    fair.seed_customers(2)
    app = fair.harness.http.app

    async def scenario() -> None:
        export = AsgiCall(app, "/v1/exports/customers", fair.auth["reader"],
                          spec_version="2.4" if how == "send fails" else "2.3")  # fmt: skip
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(export.run)
            await export.chunk_seen.wait()
            export.go_away()
        assert export.ended_by is not None

    anyio.run(scenario)
    usage = fair.get("reader", "/v1/usage").json()["clients"][0]
    assert usage["concurrency"]["in_use"] == 0
    assert fair.get("reader", "/v1/exports/customers").status_code == 200


def test_a_slot_left_by_a_crashed_process_frees_when_its_lease_runs_out(fair: Fair) -> None:
    assert fair.hold_slot("reader") is not None

    refused = fair.get("reader", "/v1/exports/customers")
    fair.harness.clock.advance(timedelta(seconds=SLOT_LEASE_SECONDS - 1))
    still = fair.get("reader", "/v1/exports/customers")
    fair.harness.clock.advance(timedelta(seconds=1))
    freed = fair.get("reader", "/v1/exports/customers")

    assert_concurrency_refusal(refused.status_code, dict(refused.headers), refused.content)
    assert still.status_code == 429
    assert freed.status_code == 200


def test_a_bulk_replay_takes_a_slot_and_gives_it_back(fair: Fair) -> None:
    replays = [
        fair.harness.http.post("/v1/dead-letters/replay", json={"destination": "xero"},
                               headers=fair.auth["reader"])
        for _ in range(2)
    ]  # fmt: skip
    held = fair.hold_slot("reader")
    refused = fair.harness.http.post("/v1/dead-letters/replay", json={"destination": "xero"},
                                     headers=fair.auth["reader"])  # fmt: skip

    assert [r.status_code for r in replays] == [200, 200]  # one slot, used one after the other
    assert held is not None
    assert refused.status_code == 429
    assert refused.json()["layer"] == "concurrency"


# --- overrides, tokens, webhooks ----------------------------------------------------------


def test_a_client_override_changes_only_that_clients_limits(fair: Fair) -> None:
    statuses = [fair.get("roomy", "/v1/customers").status_code for _ in range(4)]
    first = fair.get("roomy", "/v1/usage")

    assert statuses == [200, 200, 200, 429]  # burst 3 instead of the default plan's 300
    assert first.status_code == 429
    fair.harness.clock.advance(timedelta(seconds=60))
    usage = fair.get("roomy", "/v1/usage")
    assert usage.headers["RateLimit-Policy"].startswith('"default";q=600;w=60;synchub-burst=3')
    mine = usage.json()["clients"][0]
    assert mine["plan"] == "default"
    assert mine["throttle"] == {"rate": 600, "period_seconds": 60, "burst": 3}
    assert mine["concurrency"]["limit"] == 2


def test_token_requests_are_limited_by_the_clients_plan(fair: Fair) -> None:
    # The fixture already asked once; the tight plan allows 2 at once, then 1 a minute.
    assert fair.token_request("tight").status_code == 200
    refused = fair.token_request("tight")
    others = fair.token_request("reader")

    assert refused.status_code == 429
    assert refused.headers["RateLimit-Policy"] == '"token";q=1;w=60;synchub-burst=2'
    assert int(refused.headers["Retry-After"]) == 60
    assert others.status_code == 200  # the default plan's 20 at once
    fair.harness.clock.advance(timedelta(seconds=60))
    assert fair.token_request("tight").status_code == 200


def test_vendor_webhooks_are_limited_per_connection_once_verified(fair: Fair) -> None:
    body = EVENT.read_bytes()
    forged = fair.harness.post_event(body, secret="whsec_not_the_secret")
    accepted = [fair.harness.post_event(body) for _ in range(2)]
    refused = fair.harness.post_event(body)

    assert forged.status_code == 400  # unverified requests spend nothing
    assert [r.status_code for r in accepted] == [200, 200]
    assert accepted[1].json()["duplicate"] is True
    assert accepted[0].headers["RateLimit-Policy"] == '"webhooks";q=1;w=60;synchub-burst=2'
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["layer"] == "throttle"
    wait = int(refused.headers["Retry-After"])
    assert refused.headers["RateLimit"] == f'"webhooks";r=0;t={wait}'
    fair.harness.clock.advance(timedelta(seconds=wait))  # Stripe retries later: admitted
    assert fair.harness.post_event(body).status_code == 200


# --- usage -----------------------------------------------------------------------------


def test_usage_counts_every_layer_for_the_caller(fair: Fair) -> None:
    """The tight plan: 2 at once then 1 a minute, 4 a month, one expensive thing at a time."""
    minute = timedelta(seconds=60)
    assert [fair.get("tight", "/v1/customers").status_code for _ in range(3)] == [200, 200, 429]
    fair.harness.clock.advance(minute)
    assert fair.hold_slot("tight") is not None
    export = fair.get("tight", "/v1/exports/customers")  # admitted, then no slot: not counted
    reply = fair.get("tight", "/v1/usage")  # exempt from the quota: not counted in it
    for _ in range(2):
        fair.harness.clock.advance(minute)
        assert fair.get("tight", "/v1/customers").status_code == 200  # the 3rd, the 4th and last
    fair.harness.clock.advance(minute)
    over = fair.get("tight", "/v1/customers")

    assert export.json()["layer"] == "concurrency"
    assert over.json()["layer"] == "quota"
    assert reply.status_code == 200
    assert reply.headers["RateLimit"].startswith('"tight";r=')
    body = reply.json()
    assert {k: body[k] for k in ("object", "workspace", "period", "timezone", "resets_at")} == {
        "object": "usage",
        "workspace": "live",
        "period": "2026-12",
        "timezone": "Pacific/Auckland",
        "resets_at": "2026-12-31T11:00:00Z",  # 1 January 00:00 NZDT
    }
    assert body["clients"] == [
        {
            "client_id": fair.ids["tight"],
            "name": "tight",
            "plan": "tight",
            "overrides": [],
            "calls_admitted": 2,  # two lists; this call is exempt from the quota
            "rejections": {"throttle": 1, "quota": 0, "concurrency": 1},
            "quota": {"limit": 4, "used": 2, "remaining": 2},
            "throttle": {"rate": 2, "period_seconds": 60, "burst": 2},
            "concurrency": {"limit": 1, "in_use": 1},
        }
    ]
    workspace = fair.get("admin", "/v1/usage").json()["clients"]
    tight = next(c for c in workspace if c["client_id"] == fair.ids["tight"])
    assert tight["rejections"] == {"throttle": 1, "quota": 1, "concurrency": 1}
    assert tight["quota"] == {"limit": 4, "used": 4, "remaining": 0}
    live = {fair.ids[n] for n, (workspace_id, _) in CLIENTS.items() if workspace_id == "live"}
    assert {c["client_id"] for c in workspace} == live
    sandbox = fair.get("sandbox_admin", "/v1/usage").json()
    assert [c["client_id"] for c in sandbox["clients"]] == [fair.ids["sandbox_admin"]]


def test_usage_counters_start_again_when_the_month_turns_in_auckland(fair: Fair) -> None:
    assert [fair.get("tight", "/v1/customers").status_code for _ in range(2)] == [200, 200]
    fair.harness.clock.advance(DECEMBER_ENDS - fair.harness.clock.now())
    token = fair.token_request("tight").json()["access_token"]  # the old one expired
    fair.auth["tight"] = {"Authorization": f"Bearer {token}"}

    assert fair.get("tight", "/v1/customers").status_code == 200
    january = fair.get("tight", "/v1/usage").json()

    assert january["period"] == "2027-01"
    assert january["resets_at"] == "2027-01-31T11:00:00Z"
    assert january["clients"][0]["calls_admitted"] == 1
    assert january["clients"][0]["quota"]["used"] == 1
