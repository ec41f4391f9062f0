"""The vendor sandboxes over real HTTP: one vendor state shared by many synchub processes.

`synchub sandbox serve` hosts the Stripe, HubSpot, Xero and product sandboxes on one port
(ADR 0011). Processes with `SYNCHUB_SANDBOX_URL` reach it through `RemoteSandboxTransport`,
which names the vendor in `X-Sandbox-Vendor`. Each vendor answers as its in-process sandbox
does, after drawing a random fault at the configured rates (`chaos.py`); a timeout holds the
connection past the client's timeout and closes it unanswered.

Control endpoints (never faulted):
  GET  /_sandbox/health               200 while serving
  GET  /_sandbox/summary              request, write and fault counts; Stripe's webhook queue
  GET  /_sandbox/state                the summary plus every write journal and vendor object
  POST /_sandbox/faults               change rates: {"error": 0.2, "timeout": 0.05, ...}
  POST /_sandbox/stripe/call/{op}     run one Stripe account operation (STRIPE_OPERATIONS)
  POST /_sandbox/stripe/webhooks      send pending Stripe events to a hub, signed, some twice
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx

from synchub.connectors.chaos import ChaosPlan, ChaosRates
from synchub.connectors.hubspot.sandbox import HubSpotSandbox
from synchub.connectors.intercom.sandbox import IntercomSandbox
from synchub.connectors.product.sandbox import SHARED_SANDBOX_SECRET, ProductSandbox
from synchub.connectors.remote_sandbox import HOST_HEADER, VENDOR_HEADER
from synchub.connectors.sandbox import Sandbox, json_response
from synchub.connectors.stripe.sandbox import PendingWebhook, StripeSandbox
from synchub.connectors.stripe.webhooks import sign_header
from synchub.connectors.xero.sandbox import XeroSandbox
from synchub.core.clock import FixedClock

STRIPE_OPERATIONS = frozenset(
    {
        "create_customer",
        "update_customer",
        "create_price",
        "create_subscription",
        "set_subscription_status",
        "cancel_subscription",
        "create_invoice",
        "bill_subscription",
        "pay_invoice",
        "fail_invoice_payment",
        "refund_charge",
    }
)
_UNFORWARDED = frozenset({"host", "content-length", "connection", "transfer-encoding"})
_WEBHOOK_TRIES = 8


@dataclass
class WebhookTally:
    """What the Stripe sandbox's webhook sends got back from the hub."""

    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    extra_copies: int = 0  # deliveries of an event beyond its first, on purpose
    reordered: int = 0
    retried: int = 0  # posts repeated because the hub did not answer 200
    undelivered: int = 0  # events put back for a later send


class HostedSandboxes:
    """The four sandboxes behind the server, their fault plans and the Stripe controls."""

    def __init__(
        self,
        *,
        rates: ChaosRates,
        hang_seconds: float,
        stripe_start: datetime,
        seed: int | None = None,
    ) -> None:
        rng = random.Random(seed)
        self.rates = rates
        self.hang_seconds = hang_seconds
        self.stripe = StripeSandbox(clock=FixedClock(stripe_start))
        self.hubspot = HubSpotSandbox()
        self.xero = XeroSandbox()
        self.product = ProductSandbox(secret=SHARED_SANDBOX_SECRET)
        self.boxes: dict[str, Sandbox] = {
            "stripe": self.stripe,
            "hubspot": self.hubspot,
            "xero": self.xero,
            "intercom": IntercomSandbox(),
            "product": self.product,
        }
        for box in self.boxes.values():
            box.faults = ChaosPlan(rates, rng=random.Random(rng.random()))
        self._rng = random.Random(rng.random())
        self._sending = threading.Lock()  # one batch of webhooks at a time
        self._tally = threading.Lock()
        self.webhooks = WebhookTally()

    def handle(self, vendor: str, request: httpx.Request) -> httpx.Response:
        """One vendor request (raises httpx.TimeoutException for an injected timeout)."""
        box = self.boxes.get(vendor)
        if box is None:
            return json_response(404, {"message": f"no sandbox for vendor {vendor!r}"})
        return box.handle(request)

    def set_rates(self, **values: float) -> dict[str, float]:
        """Change fault rates (and `hang_seconds`) while serving."""
        self.hang_seconds = float(values.pop("hang_seconds", self.hang_seconds))
        for name, value in values.items():
            if not hasattr(self.rates, name):
                raise ValueError(f"unknown fault setting {name!r}")
            setattr(self.rates, name, type(getattr(self.rates, name))(value))
        return {**self.rates.as_dict(), "hang_seconds": self.hang_seconds}

    def call_stripe(self, operation: str, arguments: dict[str, Any]) -> Any:
        """Run one Stripe account operation (or `advance` its clock by `seconds`)."""
        with self.stripe.lock:
            if operation == "advance":
                self.stripe.advance(timedelta(seconds=float(arguments["seconds"])))
                return {"now": self.stripe.clock.now().isoformat()}
            if operation not in STRIPE_OPERATIONS:
                raise ValueError(f"unknown Stripe operation {operation!r}")
            return getattr(self.stripe, operation)(**arguments)

    def send_webhooks(
        self,
        *,
        url: str,
        secret: str,
        duplicate_rate: float = 0.0,
        reorder_rate: float = 0.0,
        limit: int = 500,
        concurrency: int = 1,
    ) -> dict[str, int]:
        """POST up to `limit` pending Stripe events to `url` as Stripe would: signed, some
        twice (the copy arrives later), some swapped with their neighbour, `concurrency` at
        a time (so neighbours also race)."""
        with self._sending:
            with self.stripe.lock:
                pending = self.stripe.outbox[:limit]
                self.stripe.outbox = self.stripe.outbox[limit:]
            events = [p.event for p in pending for _ in range(p.copies)]
            order = self._delivery_order(events, duplicate_rate, reorder_rate)
            limits = httpx.Limits(max_connections=concurrency)
            with (
                httpx.Client(timeout=30, limits=limits) as http,
                ThreadPoolExecutor(max(1, concurrency)) as pool,
            ):
                taken = list(pool.map(lambda e: self._post_event(http, url, secret, e), order))
            failed = {e["id"]: e for e, ok in zip(order, taken, strict=True) if not ok}
            with self.stripe.lock:  # Stripe retries what the endpoint did not take, later
                self.stripe.release([PendingWebhook(event) for event in failed.values()])
            self.webhooks.undelivered += len(failed)
            return asdict(self.webhooks)

    def _delivery_order(
        self, events: list[dict[str, Any]], duplicate_rate: float, reorder_rate: float
    ) -> list[dict[str, Any]]:
        keyed = [(float(i), e) for i, e in enumerate(events)]
        for i, event in enumerate(events):
            if self._rng.random() < duplicate_rate:  # the copy comes later in the batch
                keyed.append((self._rng.uniform(i + 0.5, len(events) + 0.5), event))
                self.webhooks.extra_copies += 1
        order = [e for _, e in sorted(keyed, key=lambda pair: pair[0])]
        for i in range(len(order) - 1):
            if self._rng.random() < reorder_rate:
                order[i], order[i + 1] = order[i + 1], order[i]
                self.webhooks.reordered += 1
        return order

    def _post_event(self, http: httpx.Client, url: str, secret: str, event: Any) -> bool:
        body = json.dumps(event, indent=2).encode("utf-8")
        for attempt in range(_WEBHOOK_TRIES):
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": sign_header(body, secret=secret, timestamp=int(time.time())),
            }
            try:
                reply = http.post(url, content=body, headers=headers)
            except httpx.TransportError:
                reply = None
            if reply is not None and reply.status_code == 200:
                duplicate = bool(reply.json().get("duplicate"))
                with self._tally:
                    self.webhooks.sent += 1
                    self.webhooks.duplicates += duplicate
                    self.webhooks.accepted += not duplicate
                return True
            with self._tally:
                self.webhooks.retried += 1
            time.sleep(min(2.0, 0.1 * 2**attempt))
        return False

    def summary(self) -> dict[str, Any]:
        """Counts only: requests, writes and faults per vendor, and Stripe's webhook queue."""
        vendors = {}
        for name, box in self.boxes.items():
            with box.lock:
                plan = box.faults
                vendors[name] = {
                    "requests": len(box.requests),
                    "writes": len(box.journal),
                    "faults": dict(plan.counts) if isinstance(plan, ChaosPlan) else {},
                }
        with self.stripe.lock:
            stripe = {
                "objects": {kind: len(objs) for kind, objs in self.stripe.objects.items()},
                "pending_webhooks": len(self.stripe.outbox),
                "webhooks": asdict(self.webhooks),
            }
        rates = {**self.rates.as_dict(), "hang_seconds": self.hang_seconds}
        return {"rates": rates, "vendors": vendors, "stripe": stripe}

    def state(self) -> dict[str, Any]:
        """The summary plus every journal and vendor object: what a test checks afterwards."""
        state = self.summary()
        for name, box in self.boxes.items():
            with box.lock:
                state["vendors"][name]["journal"] = _plain(box.journal)
        with self.hubspot.lock:
            state["hubspot"] = _plain(self.hubspot.objects)
        with self.xero.lock:
            state["xero"] = _plain(
                {
                    "contacts": list(self.xero.contacts.values()),
                    "invoices": list(self.xero.invoices.values()),
                    "payments": list(self.xero.payments.values()),
                }
            )
        with self.product.lock:
            state["product"] = _plain(
                {"accounts": self.product.accounts, "duplicates": self.product.duplicates}
            )
        return state


def _plain(value: Any) -> Any:
    """A deep, JSON-safe copy (Decimals as text), taken while the caller holds the lock."""
    return json.loads(json.dumps(value, default=str))


def control(hosted: HostedSandboxes, method: str, target: str, body: bytes) -> httpx.Response:
    """Answer one /_sandbox/ control request."""
    route = urlsplit(target).path
    try:
        data = json.loads(body) if body else {}
        if method == "GET" and route == "/_sandbox/health":
            return json_response(200, {"ok": True})
        if method == "GET" and route == "/_sandbox/summary":
            return json_response(200, hosted.summary())
        if method == "GET" and route == "/_sandbox/state":
            return json_response(200, hosted.state())
        if method == "POST" and route == "/_sandbox/faults":
            return json_response(200, hosted.set_rates(**data))
        if method == "POST" and route.startswith("/_sandbox/stripe/call/"):
            return json_response(200, hosted.call_stripe(route.rsplit("/", 1)[1], data))
        if method == "POST" and route == "/_sandbox/stripe/webhooks":
            return json_response(200, hosted.send_webhooks(**data))
    except (KeyError, TypeError, ValueError) as exc:
        return json_response(400, {"message": f"{type(exc).__name__}: {exc}"})
    return json_response(404, {"message": f"no control route {method} {route}"})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once, no delayed-ACK stalls
    server: SandboxHTTPServer

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the sandboxes' journals are the record."""

    def _serve(self) -> None:
        received_at = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        hosted = self.server.hosted
        if self.path.startswith("/_sandbox/"):
            self._send(control(hosted, self.command, self.path, body))
            return
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _UNFORWARDED]
        host = self.headers.get(HOST_HEADER) or "sandbox.invalid"
        request = httpx.Request(
            self.command,
            f"https://{host}{self.path}",
            headers=headers,
            content=body,
            extensions={"sandbox_received_at": received_at},
        )
        try:
            response = hosted.handle(self.headers.get(VENDOR_HEADER) or "", request)
        except httpx.TimeoutException:
            time.sleep(hosted.hang_seconds)  # past the client's timeout, then hang up
            self.close_connection = True
            return
        self._send(response)

    def _send(self, response: httpx.Response) -> None:
        content = response.content
        lines = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}"]
        lines += [
            f"{k}: {v}" for k, v in response.headers.multi_items() if k.lower() not in _UNFORWARDED
        ]
        lines.append(f"Content-Length: {len(content)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", errors="replace")
        try:
            self.wfile.write(head + content)
        except OSError:  # the client gave up (its timeout) and closed the connection
            self.close_connection = True


class SandboxHTTPServer(ThreadingHTTPServer):
    """A thread per connection; the hosted sandboxes are shared by all of them."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], hosted: HostedSandboxes) -> None:
        super().__init__(address, _Handler)
        self.hosted = hosted

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that vanished (a SIGKILLed worker) is expected; anything else is printed."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        """The base URL the server answers on."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


def serve_sandboxes(
    hosted: HostedSandboxes,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted; `on_ready` gets the base URL once the port is bound."""
    with SandboxHTTPServer((host, port), hosted) as server:
        if on_ready is not None:
            on_ready(server.url)
        server.serve_forever(poll_interval=0.2)


class BackgroundSandboxServer:
    """The sandbox server on a loopback port in a daemon thread (tests)."""

    def __init__(self, hosted: HostedSandboxes) -> None:
        self.server = SandboxHTTPServer(("127.0.0.1", 0), hosted)
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """The base URL the server answers on."""
        return self.server.url

    def start(self) -> None:
        """Start serving."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the port."""
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)
