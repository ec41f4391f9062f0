"""Delivery fixes seen from the terminal and the API: a partner's 410 keeps its redacted
answer, `dlq show` finds an id in any workspace, tables print whole ids, `audit --limit`
shows the newest entries, and a replay by id of a pending or in-flight delivery."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from synchub.cli import app
from synchub.connectors.fault import Fault
from synchub.events import store
from tests.e2e import test_dlq_cli
from tests.e2e.test_dlq_cli import _auth, _cli
from tests.e2e.test_partner_webhooks import Receiver, bearer, create_customer, register
from tests.harness import Harness

make = test_dlq_cli.make  # the fixture: a harness over a register whose Xero settings vary
EMAIL = "aroha.ngata@kowhai.nz"
GONE_BODY = json.dumps({"error": "gone", "contact": EMAIL, "api_key": "pk_live_abc123"}).encode()


def serve_with_body(receiver: Receiver, body: bytes) -> ThreadingHTTPServer:
    """The receiver on a free port of 127.0.0.1, answering its script with `body` for
    anything but 200."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            sent = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra = receiver.answer(self.path, headers, sent)
            answer = b"" if status == 200 else body
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _webhook_dead_letter(h: Harness) -> tuple[dict[str, Any], dict[str, Any]]:
    """A partner endpoint (workspace sandbox-acme) that answered 410 with a body."""
    receiver = Receiver(now=lambda: int(h.clock.now().timestamp()))
    server = serve_with_body(receiver, GONE_BODY)
    try:
        endpoint = register(h, receiver)
        receiver.script = [(410, {"Content-Type": "application/json", "X-Request-Id": "req-410",
                                  "Set-Cookie": "session=abc"})]  # fmt: skip
        create_customer(h)
        h.settle()
    finally:
        server.shutdown()
        server.server_close()
    auth = bearer(h)
    log = h.http.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=auth)
    [dead] = log.json()["data"]
    assert (dead["status"], dead["last_status_code"]) == ("dead", 410)
    return endpoint, dead


def test_a_partner_410_keeps_its_redacted_answer_and_dlq_show_finds_it_in_any_workspace(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = make({})
    endpoint, dead = _webhook_dead_letter(h)
    assert h.hub.register.workspace != "sandbox-acme"  # not the CLI's default workspace

    shown = _cli(h, monkeypatch, "dlq", "show", dead["id"]).stdout
    detail = json.loads(_cli(h, monkeypatch, "dlq", "show", dead["id"], "--json").stdout)

    assert "no HTTP answer" not in shown
    assert "HTTP 410" in shown
    assert "req-410" in shown
    assert "workspace: sandbox-acme" in shown
    last = detail["last_response"]
    assert last["status"] == 410
    assert last["headers"]["x-request-id"] == "req-410"
    assert "set-cookie" not in last["headers"]
    # The receiver is on loopback: its body is never read back (ADR 0009 amendment); the
    # status and the allow-listed headers are enough to act on.
    assert last["body"] == ""
    assert detail["attempt_history"][-1]["response"] == last
    for secret in (EMAIL, "pk_live_abc123", "session=abc"):
        assert secret not in shown + json.dumps(detail)

    # The table prints whole ids, however long the other columns are.
    listed = _cli(h, monkeypatch, "dlq", "list", "--workspace", "sandbox-acme").stdout
    assert dead["id"] in listed
    everything = json.loads(_audit("--json", "--limit", "1000"))
    newest = json.loads(_audit("--json", "--limit", "2"))
    assert len(everything["entries"]) > 2
    assert newest["entries"] == everything["entries"][-2:]  # the newest two, oldest first
    gone = [e for e in everything["entries"] if e["action"] == "webhook_endpoint.disabled"]
    assert [e["target"] for e in gone] == [endpoint["id"]]
    table = _audit("--limit", "1000")
    assert endpoint["id"] in table


def _audit(*args: str) -> str:
    """`synchub audit` on the environment `_cli` set; its stdout (the chain must verify)."""
    result = CliRunner().invoke(app, ["audit", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_dlq_show_without_workspace_still_says_when_an_id_is_unknown(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = make({})
    _cli(h, monkeypatch, "dlq", "list")  # sets the environment
    result = CliRunner().invoke(app, ["dlq", "show", "dlv_nope"])
    assert result.exit_code == 2
    assert "no dead letter dlv_nope" in result.output


def _pending_xero_delivery(h: Harness) -> dict[str, Any]:
    """A Xero delivery that failed once and waits (up to ten minutes) for its retry."""
    h.boxes.xero.faults.add(Fault(status=503, method="POST", path="/Contacts", times=1))
    h.boxes.stripe.create_customer(email="mere@kea.nz", name="Mere", currency="nzd")
    for item in h.boxes.stripe.outbox:
        h.post_event(json.dumps(item.event).encode())
    h.boxes.stripe.outbox = []
    for _ in range(10):
        h.worker.run_pass()
        with h.hub.db.read() as conn:
            rows = [r for r in store.list_deliveries(conn) if r["destination"] == "xero"]
        if rows and rows[0]["attempts"] == 1:
            break
    [row] = rows
    assert (row["status"], row["last_status_code"]) == ("pending", 503)
    assert row["next_attempt_at"] > h.clock.now()  # full jitter: up to ten minutes away
    return row


def _set_status(h: Harness, delivery_id: str, status: str) -> None:
    t = store.deliveries
    lease = ("w9", h.clock.now() + timedelta(minutes=5)) if status == "in_flight" else (None, None)
    with h.hub.db.write() as conn:
        conn.execute(sa.update(t).where(t.c.id == delivery_id).values(
            status=status, lease_owner=lease[0], lease_until=lease[1]))  # fmt: skip


def _row(h: Harness, delivery_id: str) -> dict[str, Any]:
    with h.hub.db.read() as conn:
        [row] = [r for r in store.list_deliveries(conn) if r["id"] == delivery_id]
    return row


SLOW_RETRY = {"retry": {"base_seconds": 600, "cap_seconds": 600, "max_attempts": 5,
                        "max_age_seconds": 36000}}  # fmt: skip


def test_dlq_replay_of_a_pending_delivery_makes_it_due_now_and_refuses_one_in_flight(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = make(SLOW_RETRY)
    waiting = _pending_xero_delivery(h)
    started = datetime.now(UTC)

    result = _cli(h, monkeypatch, "dlq", "replay", waiting["id"])
    assert result.stdout.split() == [waiting["id"]]
    assert "made 1 pending delivery(ies) due now" in result.stderr
    row = _row(h, waiting["id"])
    assert row["status"] == "pending"
    assert started <= row["next_attempt_at"] <= datetime.now(UTC)
    assert (row["attempts"], row["idempotency_key"]) == (1, waiting["idempotency_key"])
    with h.hub.db.read() as conn:
        assert [a["outcome"] for a in store.attempts_of(conn, waiting["id"])] == ["retry"]

    _set_status(h, waiting["id"], "in_flight")
    refused = CliRunner().invoke(app, ["dlq", "replay", waiting["id"]])
    assert refused.exit_code == 2
    assert f"delivery {waiting['id']} is in flight" in refused.output
    assert _row(h, waiting["id"])["status"] == "in_flight"


def test_the_api_replays_a_pending_delivery_now_and_answers_409_for_one_in_flight(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = make(SLOW_RETRY)
    waiting = _pending_xero_delivery(h)
    auth = _auth(h)
    path = f"/v1/deliveries/{waiting['id']}/replay"

    _set_status(h, waiting["id"], "in_flight")
    refused = h.http.post(path, headers=auth)
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert waiting["id"] in refused.json()["detail"]
    bulk = h.http.post("/v1/dead-letters/replay", json={"ids": [waiting["id"]]}, headers=auth)
    assert bulk.status_code == 409

    _set_status(h, waiting["id"], "pending")
    h.clock.advance(timedelta(seconds=1))
    replayed = h.http.post(path, headers=auth)
    assert replayed.status_code == 200, replayed.text
    assert (replayed.json()["due_now"], replayed.json()["count"]) == ([waiting["id"]], 0)
    row = _row(h, waiting["id"])
    assert (row["next_attempt_at"], row["attempts"]) == (h.clock.now(), 1)
    h.worker.run_pass()
    assert _row(h, waiting["id"])["status"] == "succeeded"  # no ten-minute wait
