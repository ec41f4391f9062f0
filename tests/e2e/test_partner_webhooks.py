"""Partner webhooks as a partner meets them: endpoints registered through /v1, and signed
events arriving at a real HTTP receiver on 127.0.0.1 that verifies them as a partner would."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa

from tests.harness import Harness

ALL = (
    "admin:webhooks read:webhooks write:customers read:events read:deliveries admin:deliveries"
    " admin:audit"
)
SANDBOX = "sandbox-acme"


@dataclass
class Received:
    """One request the receiver got, and what it made of it."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    duplicate: bool = False

    @property
    def signatures(self) -> list[str]:
        """The `v1,<base64>` entries of webhook-signature."""
        return self.headers.get("webhook-signature", "").split(" ")


def signature_problem(headers: dict[str, str], body: bytes, *, secret: str, now: int) -> str | None:
    """Standard Webhooks verification as a partner writes it: ±300 s, constant time."""
    msg_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not msg_id or not stamp.isdigit():
        return "missing headers"
    if abs(now - int(stamp)) > 300:
        return "timestamp outside ±300 s"
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    expected = base64.b64encode(digest)
    for entry in headers.get("webhook-signature", "").split(" "):
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return None
    return "no signature matches"


@dataclass
class Receiver:
    """A partner's endpoint: verifies with `secret`, de-duplicates on webhook-id, and
    answers with scripted (status, headers) replies, then 200."""

    now: Callable[[], int]
    secret: str = ""
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        """Where it listens (plain http on loopback: sandbox workspaces only)."""
        return f"http://127.0.0.1:{self.port}/hooks"

    @property
    def events(self) -> list[dict[str, Any]]:
        """Bodies it accepted, without duplicates, in arrival order."""
        return [json.loads(r.body) for r in self.requests if r.status == 200 and not r.duplicate]

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        """What the partner does with one request."""
        with self.lock:
            if signature_problem(headers, body, secret=self.secret, now=self.now()) is not None:
                self.requests.append(Received(path, headers, body, 401))
                return 401, {}
            status, extra = self.script.pop(0) if self.script else (200, {})
            duplicate = status == 200 and headers["webhook-id"] in self.seen
            if status == 200:
                self.seen.add(headers["webhook-id"])
            self.requests.append(Received(path, headers, body, status, duplicate))
            return status, extra


def serve(receiver: Receiver) -> ThreadingHTTPServer:
    """Run the receiver on a free port of 127.0.0.1 in a background thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra = receiver.answer(self.path, headers, body)
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def receiver(harness: Harness) -> Iterator[Receiver]:
    """A partner endpoint that shares the hub's clock (the ±300 s check uses it)."""
    made = Receiver(now=lambda: int(harness.clock.now().timestamp()))
    server = serve(made)
    yield made
    server.shutdown()
    server.server_close()


def bearer(h: Harness, *, scopes: str = ALL, workspace: str = SANDBOX) -> dict[str, str]:
    """A fresh token (tokens last 10 minutes; tests move the clock by days)."""
    assert h.hub.auth is not None
    with h.hub.db.write() as conn:
        client_id, secret = h.hub.auth.create_client(
            conn, name="partner", scopes=scopes.split(), workspace=workspace, actor="test"
        )
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    reply = h.http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


def register(
    h: Harness,
    receiver: Receiver,
    *,
    types: list[str] | None = None,
    url: str | None = None,
    auth: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Register the receiver's URL; the receiver learns the secret shown once."""
    reply = h.http.post(
        "/v1/webhook-endpoints",
        json={"url": url or receiver.url, "event_types": types or ["*"], "description": "CRM"},
        headers=auth or bearer(h),
    )
    assert reply.status_code == 201, reply.text
    endpoint: dict[str, Any] = reply.json()
    receiver.secret = endpoint["secret"]
    return endpoint


def create_customer(h: Harness, external_id: str = "p-1") -> dict[str, Any]:
    """A product write in the sandbox workspace: a customer.created event."""
    reply = h.http.post(
        "/v1/customers",
        json={"external_id": external_id, "email": f"{external_id}@kowhai.nz", "name": "Aroha"},
        headers=bearer(h),
    )
    assert reply.status_code == 201, reply.text
    customer: dict[str, Any] = reply.json()
    return customer


def test_an_endpoint_receives_each_event_signed_over_the_exact_bytes(
    harness: Harness, receiver: Receiver
) -> None:
    endpoint = register(harness, receiver)
    assert endpoint["secret"].startswith("whsec_")
    assert len(base64.b64decode(endpoint["secret"].removeprefix("whsec_"))) == 32
    customer = create_customer(harness)
    harness.settle()
    [request] = receiver.requests
    assert request.status == 200  # the receiver verified it
    [event] = harness.http.get("/v1/events", headers=bearer(harness)).json()["data"]
    assert request.headers["webhook-id"] == "msg_" + event["id"].removeprefix("evt_")
    assert request.headers["webhook-timestamp"] == str(int(harness.clock.now().timestamp()))
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.body)
    assert body["type"] == "customer.created"
    assert body["timestamp"].endswith("Z")
    assert body["data"]["object"]["id"] == customer["id"]
    assert request.path == "/hooks"
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"


def test_a_tampered_body_or_a_stale_timestamp_fails_the_partners_check(
    harness: Harness, receiver: Receiver
) -> None:
    register(harness, receiver)
    create_customer(harness)
    harness.settle()
    [request] = receiver.requests
    now = receiver.now()
    check = signature_problem
    assert check(request.headers, request.body, secret=receiver.secret, now=now) is None
    assert check(request.headers, request.body + b" ", secret=receiver.secret, now=now)
    assert check(request.headers, request.body, secret=receiver.secret, now=now + 301)
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    assert check(request.headers, request.body, secret=other, now=now)


def test_the_filter_decides_which_endpoints_get_an_event(
    harness: Harness, receiver: Receiver
) -> None:
    register(harness, receiver, types=["invoice.paid", "customer.created"])
    other = Receiver(now=receiver.now)
    server = serve(other)
    try:
        register(harness, other, types=["invoice.paid"])
        create_customer(harness)
        harness.settle()
    finally:
        server.shutdown()
        server.server_close()
    assert [e["type"] for e in receiver.events] == ["customer.created"]
    assert other.requests == []


def test_rotation_signs_with_both_secrets_for_24_hours_then_only_the_new_one(
    harness: Harness, receiver: Receiver
) -> None:
    endpoint = register(harness, receiver)
    old = receiver.secret
    rotated = harness.http.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=bearer(harness)
    )
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != old
    create_customer(harness, "p-1")
    harness.settle()
    both = receiver.requests[-1]
    assert len(both.signatures) == 2
    for secret in (old, new):
        assert signature_problem(both.headers, both.body, secret=secret, now=receiver.now()) is None
    harness.clock.advance(timedelta(hours=24, seconds=1))
    receiver.secret = new
    create_customer(harness, "p-2")
    harness.settle()
    one = receiver.requests[-1]
    assert len(one.signatures) == 1
    assert signature_problem(one.headers, one.body, secret=new, now=receiver.now()) is None
    assert signature_problem(one.headers, one.body, secret=old, now=receiver.now())


def test_secrets_are_shown_once_and_kept_only_encrypted(
    harness: Harness, receiver: Receiver
) -> None:
    auth = {**bearer(harness), "Idempotency-Key": "create-1"}
    endpoint = register(harness, receiver, auth=auth)
    again = harness.http.post(
        "/v1/webhook-endpoints",
        json={"url": receiver.url, "event_types": ["*"], "description": "CRM"},
        headers=auth,
    )
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["secret"] == endpoint["secret"]  # the replay, like the first reply
    shown = harness.http.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=bearer(harness))
    assert "secret" not in shown.json()
    raw = endpoint["secret"].encode()
    with harness.hub.db.read() as conn:
        sealed = conn.execute(sa.text("SELECT sealed FROM webhook_endpoint_secrets"))
        stored = [bytes(row[0]) for row in sealed]
        replies = conn.execute(sa.text("SELECT response_body FROM idempotency_keys"))
        kept = [str(row[0]) for row in replies]
    assert stored
    assert all(raw not in s and base64.b64decode(raw[6:]) not in s for s in stored)
    assert kept
    assert all(endpoint["secret"] not in k for k in kept)


def test_endpoints_are_listed_changed_and_deleted(harness: Harness, receiver: Receiver) -> None:
    endpoint = register(harness, receiver, types=["customer.created"])
    auth = bearer(harness)
    listed = harness.http.get("/v1/webhook-endpoints", headers=auth).json()
    assert [e["id"] for e in listed["data"]] == [endpoint["id"]]
    assert listed["object"] == "list"
    path = f"/v1/webhook-endpoints/{endpoint['id']}"
    changed = harness.http.patch(
        path, json={"event_types": ["invoice.paid"], "enabled": False}, headers=auth
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["event_types"] == ["invoice.paid"]
    assert changed.json()["disabled_reason"] == "manual"
    create_customer(harness)
    harness.settle()
    assert receiver.requests == []  # disabled, and filtered out
    assert harness.http.delete(path, headers=auth).json()["deleted"] is True
    assert harness.http.get(path, headers=auth).status_code == 404


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"url": "not a url", "event_types": ["*"]}, "/url"),
        ({"url": "ftp://127.0.0.1/x", "event_types": ["*"]}, "/url"),
        ({"url": "http://user:pw@127.0.0.1/x", "event_types": ["*"]}, "/url"),
        ({"url": "http://127.0.0.1/x", "event_types": ["customer.exploded"]}, "/event_types/0"),
        ({"url": "http://127.0.0.1/x", "event_types": ["*", "invoice.paid"]}, "/event_types"),
        ({"url": "http://127.0.0.1/x", "event_types": []}, "/event_types"),
        ({"event_types": ["*"]}, "/url"),
        ({"url": "http://127.0.0.1/x", "event_types": ["*"], "colour": "red"}, "/colour"),
    ],
)
def test_bad_input_is_problem_json_naming_the_field(
    harness: Harness, body: dict[str, Any], pointer: str
) -> None:
    reply = harness.http.post("/v1/webhook-endpoints", json=body, headers=bearer(harness))
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert pointer in [e["pointer"] for e in reply.json()["errors"]]


@pytest.mark.parametrize(
    ("url", "workspace", "reason"),
    [
        ("http://8.8.8.8/hooks", "live", "https only"),
        ("https://127.0.0.1/hooks", "live", "loopback"),
        ("https://localhost/hooks", "live", "loopback"),
        ("https://10.1.2.3/hooks", "live", "private"),
        ("https://192.168.0.10/hooks", "live", "private"),
        ("https://169.254.169.254/latest/meta-data", "live", "metadata"),
        ("https://[fd00:ec2::254]/latest", "live", "metadata"),
        ("https://100.64.0.7/hooks", "live", "carrier-grade NAT"),
        ("https://224.0.0.251/hooks", "live", "multicast"),
        ("https://0.0.0.0/hooks", "live", "unspecified"),
        ("https://[::ffff:127.0.0.1]/hooks", "live", "loopback"),
        ("http://169.254.169.254/latest", SANDBOX, "metadata"),
        ("http://10.1.2.3/hooks", SANDBOX, "private"),
        ("http://8.8.8.8/hooks", SANDBOX, "only on loopback"),
    ],
)
def test_unsafe_urls_are_refused_at_registration(
    harness: Harness, url: str, workspace: str, reason: str
) -> None:
    reply = harness.http.post(
        "/v1/webhook-endpoints",
        json={"url": url, "event_types": ["*"]},
        headers=bearer(harness, workspace=workspace),
    )
    assert reply.status_code == 422, reply.text
    [error] = reply.json()["errors"]
    assert error["pointer"] == "/url"
    assert reason in error["detail"]


@pytest.mark.parametrize(
    ("url", "workspace"),
    [("https://8.8.8.8/hooks", "live"), ("http://localhost:9/hooks", SANDBOX)],
)
def test_public_https_and_sandbox_loopback_are_accepted(
    harness: Harness, url: str, workspace: str
) -> None:
    reply = harness.http.post(
        "/v1/webhook-endpoints",
        json={"url": url, "event_types": ["*"]},
        headers=bearer(harness, workspace=workspace),
    )
    assert reply.status_code == 201, reply.text


def test_each_operation_needs_its_scope_and_its_workspace(
    harness: Harness, receiver: Receiver
) -> None:
    endpoint = register(harness, receiver)
    path = f"/v1/webhook-endpoints/{endpoint['id']}"
    reader = bearer(harness, scopes="read:webhooks")
    admin = bearer(harness, scopes="admin:webhooks")
    body = {"url": receiver.url, "event_types": ["*"]}
    assert harness.http.post("/v1/webhook-endpoints", json=body, headers=reader).status_code == 403
    assert harness.http.patch(path, json={"description": "x"}, headers=reader).status_code == 403
    assert harness.http.post(f"{path}/rotate-secret", headers=reader).status_code == 403
    assert harness.http.delete(path, headers=reader).status_code == 403
    assert harness.http.get(path, headers=admin).status_code == 403
    assert harness.http.get(f"{path}/deliveries", headers=admin).status_code == 403
    assert harness.http.get(path, headers=reader).status_code == 200
    stranger = bearer(harness, workspace="sandbox-other")
    assert harness.http.get(path, headers=stranger).status_code == 404
    assert harness.http.post(f"{path}/rotate-secret", headers=stranger).status_code == 404
    assert harness.http.get("/v1/webhook-endpoints", headers=stranger).json()["data"] == []


def test_the_delivery_log_shows_attempts_and_a_replay_keeps_the_webhook_id(
    harness: Harness, receiver: Receiver
) -> None:
    endpoint = register(harness, receiver)
    receiver.script = [(500, {})]
    create_customer(harness)
    harness.settle()
    auth = bearer(harness)
    log = harness.http.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=auth)
    [delivery] = log.json()["data"]
    assert delivery["destination"] == f"webhook:{endpoint['id']}"
    assert delivery["status"] == "succeeded"
    assert [a["outcome"] for a in delivery["attempt_history"]] == ["retry", "succeeded"]
    assert delivery["attempt_history"][0]["status_code"] == 500
    replay = harness.http.post(f"/v1/deliveries/{delivery['id']}/replay", headers=auth)
    assert replay.status_code == 200, replay.text
    harness.settle()
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(ids) == 3
    assert len(set(ids)) == 1
    assert [r.duplicate for r in receiver.requests] == [False, False, True]
    assert len(receiver.events) == 1  # the partner de-duplicated the replay
