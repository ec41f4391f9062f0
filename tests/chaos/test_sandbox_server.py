"""The shared sandbox server (ADR 0011): vendor requests forwarded over HTTP reach one vendor
state; faults land before or after the work; Stripe webhooks go out signed, some twice."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from synchub.bootstrap import build_hub
from synchub.config import Settings
from synchub.connectors.base import Attempt, OutboundEvent
from synchub.connectors.chaos import ChaosPlan, ChaosRates
from synchub.connectors.fault import Fault
from synchub.connectors.remote_sandbox import RemoteSandboxTransport
from synchub.connectors.sandbox_server import BackgroundSandboxServer, HostedSandboxes
from synchub.connectors.stripe.webhooks import verify_signature
from synchub.connectors.xero.client import XeroClient
from synchub.core.clock import FixedClock
from synchub.core.errors import TransientError
from synchub.db import Database
from tests.conftest import REPO

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def hosted() -> HostedSandboxes:
    """Sandboxes with no random faults (tests queue the ones they want)."""
    return HostedSandboxes(
        rates=ChaosRates(), hang_seconds=0.5, stripe_start=datetime(2026, 12, 1, tzinfo=UTC)
    )


@pytest.fixture
def server(hosted: HostedSandboxes) -> Iterator[BackgroundSandboxServer]:
    """The sandbox server on a loopback port."""
    running = BackgroundSandboxServer(hosted)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def xero(server: BackgroundSandboxServer, hosted: HostedSandboxes) -> Iterator[Any]:
    """A Xero client whose requests go to the server; `xero(timeout)` makes another."""
    made: list[httpx.Client] = []

    def make(timeout: float = 5.0) -> XeroClient:
        transport = RemoteSandboxTransport(server.url, vendor="xero")
        made.append(httpx.Client(transport=transport, timeout=timeout))
        clock = FixedClock(datetime(2026, 12, 1, tzinfo=UTC))
        return XeroClient(
            made[-1], token=hosted.xero.token, tenant_id=hosted.xero.tenant_id, clock=clock
        )

    yield make
    for http in made:
        http.close()


def _contact(number: str) -> dict[str, str]:
    return {"Name": f"Contact {number}", "ContactNumber": number}


def test_a_forwarded_request_is_answered_by_the_named_vendor_and_journaled(
    xero: Any, hosted: HostedSandboxes
) -> None:
    saved = xero().save_contact(
        _contact("cus_1"), contact_id=None, idempotency_key="k1", traceparent=TRACEPARENT
    )
    assert hosted.xero.contacts[saved["ContactID"]]["ContactNumber"] == "cus_1"
    [entry] = hosted.xero.journal
    assert entry["created"] is True
    assert entry["key"] == "cus_1"
    assert entry["traceparent"] == TRACEPARENT
    assert entry["idempotency_key"] == "k1"
    assert entry["waited_seconds"] >= 0  # from the request's arrival to its application
    assert hosted.hubspot.journal == []  # routed by vendor, not by luck


def test_a_5xx_after_the_work_applies_it_and_a_retry_with_the_key_creates_nothing_more(
    xero: Any, hosted: HostedSandboxes
) -> None:
    client = xero()
    hosted.xero.faults.add(Fault(status=502, apply_then_fail=True, method="POST"))
    with pytest.raises(TransientError):
        client.save_contact(
            _contact("cus_2"), contact_id=None, idempotency_key="k2", traceparent=TRACEPARENT
        )
    assert len(hosted.xero.contacts) == 1  # applied, although the answer was lost
    again = client.save_contact(
        _contact("cus_2"), contact_id=None, idempotency_key="k2", traceparent=TRACEPARENT
    )
    assert list(hosted.xero.contacts) == [again["ContactID"]]
    assert [e["created"] for e in hosted.xero.journal] == [True]


def test_a_timeout_holds_the_connection_past_the_clients_timeout_after_doing_the_work(
    xero: Any, hosted: HostedSandboxes
) -> None:
    client = xero(timeout=0.2)  # the server holds timed-out requests for 0.5 s
    hosted.xero.faults.add(Fault(timeout=True, apply_then_fail=True, method="POST"))
    with pytest.raises(TransientError, match="timed out"):
        client.save_contact(
            _contact("cus_3"), contact_id=None, idempotency_key="k3", traceparent=TRACEPARENT
        )
    assert [e["key"] for e in hosted.xero.journal] == ["cus_3"]
    assert client.find("Contacts", "ContactNumber", "cus_3")  # and the server still serves


def test_random_faults_come_at_the_configured_rates_before_and_after_the_work() -> None:
    plan = ChaosPlan(ChaosRates(error=0.2, timeout=0.05, throttle=0.1), rng=random.Random(7))
    request = httpx.Request("POST", "https://api.xero.com/api.xro/2.0/Contacts")
    faults = [plan.take(request) for _ in range(20_000)]
    share = {kind: n / len(faults) for kind, n in plan.counts.items()}
    assert share["5xx_before"] + share["5xx_after"] == pytest.approx(0.2, abs=0.01)
    assert share["5xx_after"] == pytest.approx(0.1, abs=0.01)
    assert share["timeout_before"] + share["timeout_after"] == pytest.approx(0.05, abs=0.005)
    assert share["429"] == pytest.approx(0.1, abs=0.01)
    throttled = [f for f in faults if f is not None and f.status == 429]
    assert {f.headers["Retry-After"] for f in throttled if f.headers} == {"1"}
    assert not any(f.apply_then_fail for f in throttled)  # a rate limit refuses the work


def test_processes_with_the_sandbox_url_share_one_vendor_state(
    server: BackgroundSandboxServer, hosted: HostedSandboxes, sqlite_db: Database, tmp_path: Path
) -> None:
    """Two hubs (two worker processes, in effect): the second finds what the first created."""
    settings = Settings(register_dir=REPO / "register", data_dir=tmp_path, sandbox_url=server.url)
    first, second = (build_hub(settings, db=sqlite_db) for _ in range(2))
    customer = {"id": "cus_01SHARED", "name": "Aroha Ngata", "email": "aroha@kowhai.nz"}
    for n, hub in enumerate((first, second)):
        event = OutboundEvent(
            id=f"event_0{n}",
            type="customer.updated",
            subject=customer["id"],
            time=datetime(2026, 12, 1, tzinfo=UTC),
            payload={"object": customer},
            traceparent=TRACEPARENT,
            links={},
        )
        hub.destinations["xero"].deliver(event, Attempt(f"delivery_{n}", f"synchub:d{n}", 1))
    assert [c["ContactNumber"] for c in hosted.xero.contacts.values()] == ["cus_01SHARED"]
    assert [e["created"] for e in hosted.xero.journal] == [True, False]
    for hub in (first, second):
        hub.close()


class _Receiver(BaseHTTPRequestHandler):
    """A webhook endpoint that checks Stripe signatures and remembers event ids."""

    seen: Counter[str]
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        verify_signature(
            body, self.headers["Stripe-Signature"], secrets=["whsec_test"], now=int(time.time())
        )
        event_id = json.loads(body)["id"]
        reply = json.dumps({"duplicate": event_id in self.seen}).encode()
        self.seen[event_id] += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def test_the_stripe_account_sends_every_event_signed_and_some_twice(
    server: BackgroundSandboxServer,
) -> None:
    _Receiver.seen = Counter()
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    with httpx.Client(base_url=server.url) as http:
        for n in range(30):
            made = http.post(
                "/_sandbox/stripe/call/create_customer",
                json={"email": f"c{n}@b.nz", "name": f"C {n}", "currency": "nzd"},
            )
            assert made.status_code == 200
        tally = http.post(
            "/_sandbox/stripe/webhooks",
            json={
                "url": f"http://127.0.0.1:{receiver.server_address[1]}/hook",
                "secret": "whsec_test",
                "duplicate_rate": 0.5,
                "concurrency": 3,
            },
        ).json()
        summary = http.get("/_sandbox/summary").json()
    receiver.shutdown()
    receiver.server_close()
    assert len(_Receiver.seen) == 30
    assert sum(_Receiver.seen.values()) == 30 + tally["extra_copies"]
    assert tally["extra_copies"] > 0
    assert tally["accepted"] == 30
    assert summary["stripe"]["pending_webhooks"] == 0
