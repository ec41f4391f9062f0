"""Every endpoint that checks a client secret spends the client id's one token budget.

Token, revocation and introspection all run scrypt on the presented secret; a limit on the
token endpoint alone left the other two open to guessing (review, issue 7).
"""

from __future__ import annotations

import base64
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
  default: {rate: 100, period_seconds: 60, burst: 100, monthly_quota: 100000,
            token: {rate: 3, period_seconds: 60, burst: 3}}
client_plans: {}
"""
ENDPOINTS = {
    "/oauth/token": {"grant_type": "client_credentials"},
    "/oauth/revoke": {"token": "not-a-token"},
    "/oauth/introspect": {"token": "not-a-token"},
}


@pytest.fixture
def hub(db: Database, tmp_path: Path) -> Iterator[Harness]:
    """A hub whose token budget is 3 attempts a minute per client id."""
    register = tmp_path / "register"
    shutil.copytree(REPO / "register", register)
    (register / "plans.yaml").write_text(PLANS)
    clock = FixedClock(datetime(2026, 12, 3, 1, 0, tzinfo=UTC))
    harness = make_harness(db, clock, data_dir=tmp_path, register_dir=register)
    yield harness
    harness.worker.stop()
    harness.http.close()


def _client(h: Harness) -> tuple[str, str]:
    with h.hub.db.write() as conn:
        return h.hub.auth.create_client(
            conn, name="t", scopes=["read:customers"], workspace="live", actor="test"
        )


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def _post(h: Harness, path: str, client_id: str, secret: str) -> int:
    return h.http.post(path, data=ENDPOINTS[path], headers=_basic(client_id, secret)).status_code


@pytest.mark.parametrize("path", sorted(ENDPOINTS))
def test_guessing_a_secret_is_limited_on_every_endpoint(hub: Harness, path: str) -> None:
    client_id, secret = _client(hub)
    assert [_post(hub, path, client_id, "wrong") for _ in range(3)] == [401, 401, 401]
    refused = hub.http.post(path, data=ENDPOINTS[path], headers=_basic(client_id, "wrong"))
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "rate_limited"
    assert "layer: token" in refused.json()["detail"]
    assert refused.headers["Cache-Control"] == "no-store"
    wait = int(refused.headers["Retry-After"])
    assert wait >= 1
    # The right secret is refused too while the budget is spent: no oracle for a good guess.
    assert _post(hub, path, client_id, secret) == 429
    hub.clock.advance(timedelta(seconds=wait))  # a client that waits Retry-After is admitted
    assert _post(hub, path, client_id, secret) == 200


def test_failures_on_all_three_endpoints_share_one_budget(hub: Harness) -> None:
    client_id, secret = _client(hub)
    spent = [_post(hub, path, client_id, "wrong") for path in sorted(ENDPOINTS)]
    assert spent == [401, 401, 401]
    assert [_post(hub, path, client_id, secret) for path in sorted(ENDPOINTS)] == [429] * 3


def test_the_budget_belongs_to_the_client_id(hub: Harness) -> None:
    attacked, _ = _client(hub)
    other, other_secret = _client(hub)
    for _ in range(4):
        _post(hub, "/oauth/introspect", attacked, "wrong")
    assert _post(hub, "/oauth/introspect", attacked, "wrong") == 429
    assert _post(hub, "/oauth/introspect", other, other_secret) == 200
    assert _post(hub, "/oauth/token", other, other_secret) == 200
