"""GET /metrics: who may scrape it, its format, and fair-use counters per policy and layer.

Prometheus counters live per process (ADR 0013), so every assertion compares a scrape after
the requests with a scrape before them.
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from synchub.bootstrap import build_authorization_server
from synchub.config import Settings
from synchub.core.clock import FixedClock
from synchub.db import Database
from synchub.observability.metrics import record_delivery, record_event
from tests.conftest import REPO
from tests.harness import Harness, make_harness

# default: 2 a minute (one more every 30 s), burst 2, 3 a month; partner: 1 a minute;
# ops (the scraper): never in the way, so its scrapes never touch the other policies.
PLANS = """plans:
  default: {{rate: 2, period_seconds: 60, burst: 2, monthly_quota: 3}}
  partner: {{rate: 1, period_seconds: 60, burst: 1, monthly_quota: 1000}}
  ops: {{rate: 600, period_seconds: 60, burst: 60, monthly_quota: 1000000}}
client_plans:
  {partner}: partner
  {ops}: ops
"""
Counts = dict[tuple[str, ...], float]
ATTEMPTS = "synchub_delivery_attempts_total"
DURATIONS = "synchub_delivery_attempt_duration_seconds_count"
EVENTS = "synchub_events_written_total"


@dataclass
class Callers:
    """A harness and a bearer header per kind of client."""

    harness: Harness
    auth: dict[str, dict[str, str]]

    def get(self, who: str, path: str = "/v1/customers") -> int:
        """GET a path as one of the clients; the status code."""
        return self.harness.http.get(path, headers=self.auth[who]).status_code

    def scrape(self) -> str:
        """GET /metrics as the operator's scraper."""
        reply = self.harness.http.get("/metrics", headers=self.auth["ops"])
        assert reply.status_code == 200, reply.text
        return reply.text


CLIENTS = {  # name -> (workspace, scopes)
    "default": ("live", ["read:customers"]),
    "partner": ("live", ["read:customers"]),
    "ops": ("live", ["read:metrics"]),
    "sandbox_ops": ("sandbox-acme", ["read:metrics"]),
}


@pytest.fixture
def callers(db: Database, clock: FixedClock, tmp_path: Path) -> Iterator[Callers]:
    """A hub whose register puts one client on each plan, with a token for each client."""
    settings = Settings(data_dir=tmp_path, database_url="sqlite://")
    server = build_authorization_server(settings, db, clock)
    with db.write() as conn:
        made = {name: server.create_client(conn, name=name, scopes=scopes, workspace=workspace,
                                           actor="test")
                for name, (workspace, scopes) in CLIENTS.items()}  # fmt: skip
    register = tmp_path / "register"
    shutil.copytree(REPO / "register", register)
    (register / "plans.yaml").write_text(
        PLANS.format(partner=made["partner"][0], ops=made["ops"][0])
    )
    harness = make_harness(db, clock, data_dir=tmp_path, register_dir=register)
    auth = {}
    for name, (client_id, secret) in made.items():
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        token = harness.http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        ).json()["access_token"]
        auth[name] = {"Authorization": f"Bearer {token}"}
    yield Callers(harness, auth)
    harness.worker.stop()
    harness.http.close()


def samples(text: str, name: str, *labels: str) -> Counts:
    """Every sample of one metric in an exposition, keyed by the values of `labels`."""
    return {
        tuple(sample.labels[label] for label in labels): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def moved(before: Counts, after: Counts) -> Counts:
    """How much each labelled counter grew between two scrapes (only the ones that did)."""
    grown = {labels: value - before.get(labels, 0.0) for labels, value in after.items()}
    return {labels: delta for labels, delta in grown.items() if delta}


def decisions(text: str) -> Counts:
    """synchub_ratelimit_decisions_total by (policy, layer, outcome)."""
    return samples(text, "synchub_ratelimit_decisions_total", "policy", "layer", "outcome")


def test_metrics_need_a_read_metrics_token_of_the_operators_workspace(callers: Callers) -> None:
    anonymous = callers.harness.http.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")

    assert callers.get("partner", "/metrics") == 403  # a valid token without read:metrics
    assert callers.get("sandbox_ops", "/metrics") == 403  # read:metrics, but a sandbox workspace

    reply = callers.harness.http.get("/metrics", headers=callers.auth["ops"])
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert reply.headers["Cache-Control"] == "no-store"
    version = callers.harness.hub.version
    assert samples(reply.text, "synchub_build_info", "version") == {(version,): 1.0}


def test_decisions_are_counted_per_policy_layer_and_outcome(callers: Callers) -> None:
    before = decisions(callers.scrape())

    assert [callers.get("default") for _ in range(3)] == [200, 200, 429]  # the throttle refuses
    callers.harness.clock.advance(timedelta(seconds=30))
    assert callers.get("default") == 200  # the third and last request of the month
    callers.harness.clock.advance(timedelta(seconds=30))
    assert callers.get("default") == 429  # the throttle admits, the quota refuses
    assert [callers.get("partner") for _ in range(2)] == [200, 429]

    grown = moved(before, decisions(callers.scrape()))
    assert {k: v for k, v in grown.items() if k[0] != "ops"} == {
        ("default", "throttle", "admitted"): 4,
        ("default", "throttle", "rejected"): 1,
        ("default", "quota", "admitted"): 3,
        ("default", "quota", "rejected"): 1,
        ("partner", "throttle", "admitted"): 1,
        ("partner", "throttle", "rejected"): 1,
        ("partner", "quota", "admitted"): 1,
    }


def test_deliveries_and_events_written_are_exposed(callers: Callers) -> None:
    text = callers.scrape()
    attempts = samples(text, ATTEMPTS, "destination", "outcome")
    durations = samples(text, DURATIONS, "destination")
    events = samples(text, EVENTS, "event_type")

    record_delivery("xero", "delivered", seconds=0.2)
    record_delivery("xero", "retry")
    record_event("invoice.paid")

    text = callers.scrape()
    assert moved(attempts, samples(text, ATTEMPTS, "destination", "outcome")) == {
        ("xero", "delivered"): 1,
        ("xero", "retry"): 1,
    }
    assert moved(durations, samples(text, DURATIONS, "destination")) == {("xero",): 1}
    assert moved(events, samples(text, EVENTS, "event_type")) == {("invoice.paid",): 1}
