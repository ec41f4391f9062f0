"""Partner webhooks to private targets: SYNCHUB_WEBHOOK_PRIVATE_TARGETS decides whether a
sandbox workspace may register loopback receivers, and whatever it says, the answer body of
a target that is not public is never kept or shown (SSRF with readback; ADR 0009 amendment).
"""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from synchub.core.clock import FixedClock
from synchub.db import Database
from synchub.webhooks.destination import summarize_failure
from synchub.webhooks.ssrf import IPAddress, private_targets_policy, resolve_host
from tests.e2e.test_partner_webhooks import bearer
from tests.harness import Harness, make_harness

SECRET_BODY = b'{"internal": "root:x:0:0 config-of-a-local-service", "note": "readback"}'
REVIEWER_URLS = [
    "http://127.0.0.1:8080/v1/customers",
    "http://[::1]:6379/",
    "http://localhost:5432/",
    "http://[::ffff:127.0.0.1]:22/",
]


@pytest.fixture
def local_service() -> Iterator[tuple[str, list[bytes]]]:
    """A service on 127.0.0.1 that answers every POST 500 with a body it wants kept secret."""
    seen: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Retry-After", "7")
            self.send_header("X-Internal", "leaky")
            self.send_header("Content-Length", str(len(SECRET_BODY)))
            self.end_headers()
            self.wfile.write(SECRET_BODY)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/internal", seen
    server.shutdown()
    server.server_close()


def hub(
    monkeypatch: pytest.MonkeyPatch,
    db: Database,
    clock: FixedClock,
    tmp_path: Path,
    **env: str,
) -> Harness:
    """A hub built with these SYNCHUB_* settings (the harness reads the environment)."""
    for name in ("WEBHOOK_PRIVATE_TARGETS", "HOST", "PUBLIC_URL"):
        monkeypatch.delenv(f"SYNCHUB_{name}", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(f"SYNCHUB_{name.upper()}", value)
    return make_harness(db, clock, data_dir=tmp_path)


@pytest.fixture
def hubs(db: Database, clock: FixedClock, tmp_path: Path) -> Iterator[list[Harness]]:
    made: list[Harness] = []
    yield made
    for h in made:
        h.worker.stop()
        h.http.close()
        for client in h.hub.http_clients:
            client.close()


def partner_example(host: str, port: int) -> list[IPAddress]:
    """partner.example is a public host; everything else resolves as usual."""
    return (
        [ipaddress.ip_address("8.8.8.8")] if host == "partner.example" else resolve_host(host, port)
    )


def register(h: Harness, url: str) -> httpx.Response:
    reply: httpx.Response = h.http.post(
        "/v1/webhook-endpoints", json={"url": url, "event_types": ["*"]}, headers=bearer(h)
    )
    return reply


@pytest.mark.parametrize(
    "env",
    [
        {"webhook_private_targets": "none"},
        # listening on every address (the issuer must then be set; loopback is allowed)
        {"host": "0.0.0.0", "public_url": "http://127.0.0.1:8080"},  # noqa: S104
        {"public_url": "https://hub.example.com"},  # behind a proxy, reachable by partners
    ],
    ids=["none", "auto-listening-on-all", "auto-public-url"],
)
def test_a_shared_hub_refuses_loopback_targets_for_sandbox_workspaces(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    db: Database,
    clock: FixedClock,
    tmp_path: Path,
    hubs: list[Harness],
) -> None:
    h = hub(monkeypatch, db, clock, tmp_path, **env)
    hubs.append(h)
    for url in REVIEWER_URLS:
        reply = register(h, url)
        assert reply.status_code == 422, (url, reply.text)
        problem = reply.json()
        assert problem["code"] == "unsafe_webhook_url"
        assert [e["pointer"] for e in problem["errors"]] == ["/url"]
        assert "loopback" in problem["errors"][0]["detail"]
    # PATCH onto loopback is refused too (first an endpoint on a public host)
    h.hub.webhooks.resolve = partner_example  # type: ignore[union-attr]
    made = register(h, "https://partner.example/hooks")
    assert made.status_code == 201, made.text
    moved = h.http.patch(
        f"/v1/webhook-endpoints/{made.json()['id']}",
        json={"url": "http://127.0.0.1:6379/"},
        headers=bearer(h),
    )
    assert moved.status_code == 422, moved.text


def test_a_local_hub_still_lets_sandbox_workspaces_use_loopback_receivers(
    monkeypatch: pytest.MonkeyPatch,
    db: Database,
    clock: FixedClock,
    tmp_path: Path,
    hubs: list[Harness],
) -> None:
    h = hub(monkeypatch, db, clock, tmp_path)  # defaults: auto, 127.0.0.1:8080
    hubs.append(h)
    assert register(h, "http://127.0.0.1:9/hooks").status_code == 201
    live = h.http.post("/v1/webhook-endpoints", json={"url": "https://127.0.0.1/h",
                       "event_types": ["*"]}, headers=bearer(h, workspace="live"))  # fmt: skip
    assert live.status_code == 422  # live workspaces never


def test_the_setting_sandbox_allows_loopback_even_on_a_shared_hub(
    monkeypatch: pytest.MonkeyPatch,
    db: Database,
    clock: FixedClock,
    tmp_path: Path,
    hubs: list[Harness],
) -> None:
    h = hub(monkeypatch, db, clock, tmp_path, webhook_private_targets="sandbox",
            public_url="https://hub.example.com")  # fmt: skip
    hubs.append(h)
    assert register(h, "http://localhost:9/hooks").status_code == 201
    assert register(h, "http://10.0.0.1/hooks").status_code == 422  # private ranges: never


def test_the_auto_policy_is_decided_from_where_the_hub_listens() -> None:
    local = "http://127.0.0.1:8080"
    assert private_targets_policy("auto", host="127.0.0.1", public_url=local) == "sandbox"
    assert private_targets_policy("auto", host="localhost", public_url=local) == "sandbox"
    assert private_targets_policy("auto", host="::1", public_url="http://[::1]:8080") == "sandbox"
    assert private_targets_policy("auto", host="0.0.0.0", public_url=local) == "none"  # noqa: S104
    assert private_targets_policy("auto", host="10.1.2.3", public_url=local) == "none"
    assert private_targets_policy("auto", host="127.0.0.1",
                                  public_url="https://hub.example.com") == "none"  # fmt: skip
    assert private_targets_policy("none", host="127.0.0.1", public_url=local) == "none"
    shared = "https://hub.example.com"
    assert private_targets_policy("sandbox", host="0.0.0.0", public_url=shared) == "sandbox"  # noqa: S104


def test_a_loopback_targets_answer_body_is_never_kept_or_shown(
    monkeypatch: pytest.MonkeyPatch,
    db: Database,
    clock: FixedClock,
    tmp_path: Path,
    hubs: list[Harness],
    local_service: tuple[str, list[bytes]],
) -> None:
    url, seen = local_service
    h = hub(monkeypatch, db, clock, tmp_path, webhook_private_targets="sandbox")
    hubs.append(h)
    made = register(h, url)
    assert made.status_code == 201, made.text
    auth = bearer(h)
    created = h.http.post("/v1/customers", json={"external_id": "c-1",
                          "email": "c1@kowhai.nz", "name": "Aroha"}, headers=auth)  # fmt: skip
    assert created.status_code == 201, created.text
    h.worker.run_pass()
    assert len(seen) == 1  # the attempt was made and answered 500 with a body

    log = h.http.get(f"/v1/webhook-endpoints/{made.json()['id']}/deliveries", headers=auth)
    assert log.status_code == 200, log.text
    [delivery] = log.json()["data"]
    assert delivery["last_status_code"] == 500
    response = delivery["last_response"]
    assert response["status"] == 500
    # withheld, and said so: not read as an empty body the endpoint sent
    assert response["body"] == ""
    assert response["body_withheld"] == "private target"
    # allow-listed headers only, less the body's length
    assert response["headers"]["retry-after"] == "7"
    assert response["headers"]["content-type"] == "application/json"
    assert set(response["headers"]) <= {"retry-after", "content-type", "date"}
    shown = json.dumps(log.json())
    assert "root:x" not in shown
    assert "readback" not in shown
    detail = h.http.get(f"/v1/deliveries/{delivery['id']}", headers=auth)
    assert detail.status_code == 200, detail.text
    assert "root:x" not in detail.text
    [attempt] = detail.json()["attempt_history"]
    assert attempt["status_code"] == 500
    assert attempt["response"]["body"] == ""
    assert attempt["response"]["body_withheld"] == "private target"
    with db.read() as conn:  # nor kept where nobody looks
        stored = conn.exec_driver_sql("SELECT last_response FROM deliveries").fetchall()
    assert stored
    assert all("root:x" not in str(row[0]) for row in stored)


def test_a_public_targets_answer_body_is_still_summarized() -> None:
    answer = httpx.Response(500, headers={"Retry-After": "3", "X-Internal": "x"},
                            content=b'{"error": "bad field"}')  # fmt: skip
    kept = summarize_failure(answer, keep_body=True)
    hidden = summarize_failure(answer, keep_body=False)
    assert "bad field" in kept.body
    assert "content-length" in kept.headers
    assert (hidden.status, hidden.body, hidden.headers) == (500, "", {"retry-after": "3"})
    assert hidden.as_dict()["body"] == ""
    assert hidden.as_dict()["body_withheld"] == "private target"
    assert "body_withheld" not in kept.as_dict()
