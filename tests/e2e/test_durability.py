"""An event acknowledged with 2xx survives the process being SIGKILLed right after."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from synchub.connectors.stripe.webhooks import sign_header
from tests.conftest import REPO

SECRET = "whsec_durability_test"
TEMPLATE = json.loads((REPO / "tests/data/stripe/events/customer.created.json").read_text())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_no_acknowledged_event_is_lost_when_the_server_is_killed(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "SYNCHUB_DATA_DIR": str(tmp_path),
        "SYNCHUB_LOG_LEVEL": "ERROR",
        "SYNCHUB_REGISTER_DIR": str(REPO / "register"),
        "SYNCHUB_STRIPE_WEBHOOK_SECRET": SECRET,
    }
    env.pop("SYNCHUB_DATABASE_URL", None)
    server = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "synchub.cli", "serve", "--port", str(port), "--role", "api"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    acknowledged: list[str] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            for _ in range(200):
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.05)
            for n in range(60):
                body = json.dumps({**TEMPLATE, "id": f"evt_kill_{n}"}).encode()
                header = sign_header(body, secret=SECRET, timestamp=int(time.time()))
                reply = http.post(
                    "/v1/webhooks/stripe", content=body, headers={"Stripe-Signature": header}
                )
                assert reply.status_code == 200
                acknowledged.append(f"evt_kill_{n}")
            server.send_signal(signal.SIGKILL)  # straight after the last 2xx
    finally:
        server.kill()
        server.wait(10)
    with sqlite3.connect(tmp_path / "synchub.db") as conn:
        stored = {row[0] for row in conn.execute("SELECT external_id FROM inbox_events")}
    assert set(acknowledged) <= stored
    assert len(acknowledged) == 60
