"""Dead letters and destination status from the terminal and the API: `synchub dlq
list|show|replay`, `synchub deliveries status`, GET /v1/connections (ADR 0008)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from synchub.auth.model import SCOPES
from synchub.cli import app
from synchub.connectors.fault import Fault
from synchub.core.clock import FixedClock
from synchub.db import Database
from synchub.events import breaker_store, store
from tests.conftest import REPO
from tests.harness import Harness, make_harness

EMAIL = "aroha.ngata@kowhai.nz"
SECRET_BODY = json.dumps({
    "Type": "ValidationException", "Message": f"contact {EMAIL} refused",
    "Elements": [{"ValidationErrors": [{"Message": f"token=xero-secret-123 for {EMAIL}"}]}],
    "access_token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
}).encode()  # fmt: skip


def _register_dir(tmp_path: Path, xero: dict[str, Any]) -> Path:
    """The repo's register with the Xero connection's retry and breaker settings changed."""
    folder = tmp_path / "register"
    folder.mkdir()
    for source in (REPO / "register").glob("*.yaml"):
        text = source.read_text(encoding="utf-8")
        if source.name == "connections.yaml":
            document = yaml.safe_load(text)
            document["connections"]["xero"].update(xero)
            text = yaml.safe_dump(document)
        (folder / source.name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def make(db: Database, tmp_path: Path) -> Iterator[Any]:
    """Build a harness over a register whose Xero settings the test chooses.

    Its clock starts at the real time: the CLI runs on the system clock, and a replay made
    there must be due for the harness's worker.
    """
    made: list[Harness] = []
    clock = FixedClock(datetime.now(UTC))

    def build(xero: dict[str, Any]) -> Harness:
        register = _register_dir(tmp_path, xero)
        made.append(make_harness(db, clock, data_dir=tmp_path, register_dir=register))
        return made[-1]

    yield build
    for harness in made:
        harness.worker.stop()
        harness.http.close()
        for client in harness.hub.http_clients:
            client.close()


def _cli(h: Harness, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    monkeypatch.setenv("SYNCHUB_DATABASE_URL",
                       h.hub.db.engine.url.render_as_string(hide_password=False))  # fmt: skip
    monkeypatch.setenv("SYNCHUB_DATA_DIR", str(h.hub.settings.data_dir))
    monkeypatch.setenv("SYNCHUB_REGISTER_DIR", str(h.hub.settings.register_dir))
    monkeypatch.setenv("SYNCHUB_LOG_LEVEL", "ERROR")
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def _auth(h: Harness) -> dict[str, str]:
    assert h.hub.auth is not None
    with h.hub.db.write() as conn:
        client = h.hub.auth.create_client(conn, name="ops", scopes=list(SCOPES),
                                          workspace="live", actor="test")  # fmt: skip
    basic = base64.b64encode(f"{client[0]}:{client[1]}".encode()).decode()
    reply = h.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                        headers={"Authorization": f"Basic {basic}"})  # fmt: skip
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


def test_a_dead_letter_keeps_the_redacted_last_response(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = make({})
    h.boxes.xero.faults.add(Fault(status=400, body=SECRET_BODY, method="POST", path="/Contacts",
                                  headers={"Content-Type": "application/json",
                                           "X-Request-Id": "req-77",
                                           "Set-Cookie": "session=abc",
                                           "WWW-Authenticate": "Bearer realm=xero"}))  # fmt: skip
    h.boxes.stripe.create_customer(email=EMAIL, name="Aroha", currency="nzd")
    h.deliver_stripe()

    auth = _auth(h)
    [dead] = h.http.get("/v1/dead-letters", headers=auth).json()["data"]
    detail = h.http.get(f"/v1/dead-letters/{dead['id']}", headers=auth).json()
    shown = _cli(h, monkeypatch, "dlq", "show", dead["id"]).stdout

    last = detail["last_response"]
    assert last["status"] == 400
    assert last["headers"]["x-request-id"] == "req-77"
    assert {"set-cookie", "www-authenticate", "authorization"}.isdisjoint(last["headers"])
    assert "a***@kowhai.nz" in last["body"]
    assert detail["attempt_history"][-1]["response"] == last
    everything = json.dumps(detail) + shown
    for secret in (EMAIL, "xero-secret-123", "eyJhbGciOiJIUzI1NiJ9", "session=abc"):
        assert secret not in everything
    assert "HTTP 400" in shown
    assert "req-77" in shown


def test_dlq_list_show_and_replay_keep_the_key_and_create_nothing_twice(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = make({"retry": {"base_seconds": 1, "cap_seconds": 2, "max_attempts": 2,
                        "max_age_seconds": 3600}})  # fmt: skip
    # Xero applies each request, then the answer is lost behind a 500.
    h.boxes.xero.faults.add(Fault(apply_then_fail=True, status=500, method="POST",
                                  path="/Contacts", times=2))  # fmt: skip
    h.boxes.stripe.create_customer(email="kiri@tui.nz", name="Kiri", currency="nzd")
    h.deliver_stripe()
    assert len(h.boxes.xero.contacts) == 1  # the first attempt did create it

    listed = json.loads(
        _cli(h, monkeypatch, "dlq", "list", "--destination", "xero", "--error-code", "500",
             "--json").stdout)  # fmt: skip
    [dead] = listed["data"]
    assert dead["dead_reason"].startswith("gave up after 2 attempts")
    assert json.loads(_cli(h, monkeypatch, "dlq", "list", "--event-type", "invoice.paid",
                           "--json").stdout)["data"] == []  # fmt: skip
    shown = json.loads(_cli(h, monkeypatch, "dlq", "show", dead["id"], "--json").stdout)
    key = shown["idempotency_key"]
    assert [a["status_code"] for a in shown["attempt_history"]] == [500, 500]

    replayed = _cli(h, monkeypatch, "dlq", "replay", dead["id"]).stdout.split()
    assert replayed == [dead["id"]]
    h.settle()

    with h.hub.db.read() as conn:
        [row] = [r for r in store.list_deliveries(conn) if r["id"] == dead["id"]]
    assert (row["status"], row["idempotency_key"]) == ("succeeded", key)
    assert len(h.boxes.xero.contacts) == 1  # no duplicate create
    assert {k.split(":contact")[0] for k in h.boxes.xero.idempotency} == {key}
    audit = _cli(h, monkeypatch, "audit", "--json").stdout
    assert "deliveries.replay" in audit


def test_dlq_replay_needs_ids_or_a_filter(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    h = make({})
    monkeypatch.setenv("SYNCHUB_DATABASE_URL",
                       h.hub.db.engine.url.render_as_string(hide_password=False))  # fmt: skip
    monkeypatch.setenv("SYNCHUB_REGISTER_DIR", str(h.hub.settings.register_dir))
    result = CliRunner().invoke(app, ["dlq", "replay"])
    assert result.exit_code == 2
    assert "at least one filter" in result.output


def test_status_shows_an_open_breaker_in_the_cli_and_the_api(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = make({"breaker": {"failures": 2, "open_seconds": 600}})
    h.boxes.xero.faults.add(Fault(status=503, method="POST", path="/Contacts", times=100))
    h.boxes.stripe.create_customer(email="mere@kea.nz", name="Mere", currency="nzd")
    for item in h.boxes.stripe.outbox:
        h.post_event(json.dumps(item.event).encode())
    h.boxes.stripe.outbox = []
    for _ in range(20):  # until the second failure opens Xero's breaker
        h.worker.run_pass()
        h.clock.advance(timedelta(seconds=5))
        with h.hub.db.read() as conn:
            health = breaker_store.health_row(conn, ("live", "xero"))
        if health is not None and health.state == "open":
            break

    status = json.loads(_cli(h, monkeypatch, "deliveries", "status", "--json").stdout)
    table = _cli(h, monkeypatch, "deliveries", "status").stdout
    connections = {c["name"]: c for c in
                   h.http.get("/v1/connections", headers=_auth(h)).json()["data"]}  # fmt: skip

    xero = status["destinations"]["xero"]
    assert xero["breaker"]["state"] == "open"
    assert xero["deliveries"] == {"pending": 1}
    assert xero["next_attempt_at"] == xero["breaker"]["open_until"]
    assert xero["oldest_pending_age_seconds"] > 0
    assert status["destinations"]["hubspot"]["breaker"]["state"] == "closed"
    assert "open" in table
    assert connections["xero"]["breaker"]["state"] == "open"
    assert connections["xero"]["next_attempt_at"] is not None
    assert connections["hubspot"]["deliveries"] == {"succeeded": 1}
    assert connections["hubspot"]["breaker"]["state"] == "closed"
