"""End-to-end latency: a signed Stripe webhook accepted by `synchub serve` (a child process:
API plus its in-process worker, woken by each webhook) → every subscribed destination written.

Customers are created first (not timed). Then invoice.paid webhooks, each for a new invoice
and with its own W3C trace id, which synchub carries from the inbox through the outbox to the
callbacks' `traceparent` header; the sink stamps each callback's arrival. The maximum rate is
a burst of webhooks sent as fast as four client threads can divided by the time until their
last callback arrived; then webhooks are sent on a fixed schedule at half that rate, and each
one's latency is (last callback's arrival) - (its 200 reply).
"""

from __future__ import annotations

import json
import secrets
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from _rig import STRIPE_SECRET, SYNCHUB, Store, child_env
from _sink import Sink
from synchub.connectors.stripe.webhooks import sign_header

EVENTS = Path(__file__).resolve().parents[1] / "tests/data/stripe/events"
TEMPLATE_IDS = {
    "customer": "cus_QXg1o8vcGmoR32",
    "invoice": "in_1Pgc6tB7WZ01zgkWu9fdqL6I",
    "line": "il_1Pgc6sB7WZ01zgkWFnxLrLCq",
}
CLIENT_THREADS = 4


class Webhooks:
    """Stripe event bodies from the test templates, every id made new."""

    def __init__(self) -> None:
        self.customer_text = (EVENTS / "customer.created.json").read_text()
        self.invoice_text = (EVENTS / "invoice.paid.json").read_text()
        self.run = secrets.token_hex(4)
        self.number = 0

    def _fresh(self, text: str, **ids: str) -> bytes:
        self.number += 1
        body = json.loads(text)
        if body["data"]["object"].get("object") == "invoice":  # a one-off invoice: no subscription
            body["data"]["object"]["parent"] = None
        text = json.dumps({**body, "id": f"evt_bench{self.run}{self.number}"})
        for kind, new in ids.items():
            text = text.replace(TEMPLATE_IDS[kind], new)
        return text.encode()

    def customer(self, customer: str) -> bytes:
        """customer.created for a new customer."""
        return self._fresh(self.customer_text, customer=customer)

    def invoice_paid(self, customer: str) -> bytes:
        """invoice.paid for a new invoice of an existing customer."""
        n = self.number
        return self._fresh(
            self.invoice_text,
            customer=customer,
            invoice=f"in_bench{self.run}{n}",
            line=f"il_bench{self.run}{n}",
        )


def post_webhook(client: httpx.Client, body: bytes, trace_id: str) -> float:
    """POST one signed webhook with its own trace id; the wall-clock time of the 200."""
    headers = {
        "Content-Type": "application/json",
        "Stripe-Signature": sign_header(body, secret=STRIPE_SECRET, timestamp=int(time.time())),
        "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
    }
    reply = client.post("/v1/webhooks/stripe", content=body, headers=headers)
    if reply.status_code != 200:
        raise RuntimeError(f"webhook refused: {reply.status_code} {reply.text[:200]}")
    return time.time()


@contextmanager
def serving(env: dict[str, str], work_dir: Path) -> Iterator[httpx.Client]:
    """`synchub serve` on a free loopback port; a client for it; stopped afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (work_dir / "serve.log").open("wb")
    proc = subprocess.Popen(
        [str(SYNCHUB), "serve", "--port", str(port)], env=child_env(env), stdout=log, stderr=log
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=30)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("synchub serve did not start; see " + str(log.name))
            time.sleep(0.1)
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def wait_settled(store: Store, timeout: float = 300.0) -> None:
    """Wait until nothing waits in the inbox, the outbox or the delivery queue."""
    query = sa.text(
        "SELECT (SELECT count(*) FROM inbox_events WHERE status IN ('pending', 'parked'))"
        " + (SELECT count(*) FROM outbox_events WHERE dispatched_at IS NULL)"
        " + (SELECT count(*) FROM deliveries WHERE status IN ('pending', 'in_flight'))"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with store.db.read() as conn:
            if conn.execute(query).scalar_one() == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("the hub did not settle")


def expected_callbacks(store: Store) -> dict[str, int]:
    """Deliveries per trace id (the outbox rows carry the webhook's traceparent)."""
    query = sa.text(
        "SELECT o.traceparent, count(*) FROM deliveries d JOIN outbox_events o"
        " ON o.id = d.event_id GROUP BY o.traceparent"
    )
    with store.db.read() as conn:
        return {tp[3:35]: int(n) for tp, n in conn.execute(query) if tp}


def send_paced(client: httpx.Client, bodies: list[bytes], rate: float | None) -> dict[str, float]:
    """Send bodies from four threads, on a fixed schedule (rate per second) or as fast as they
    can (rate None); return each trace id's acceptance time."""
    accepted: dict[str, float] = {}
    start = time.monotonic() + (0.05 if rate else 0.0)  # time for the threads to start

    def loop(k: int) -> None:
        for i in range(k, len(bodies), CLIENT_THREADS):
            if rate is not None and (wait := start + i / rate - time.monotonic()) > 0:
                time.sleep(wait)
            trace_id = secrets.token_hex(16)
            accepted[trace_id] = post_webhook(client, bodies[i], trace_id)

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(CLIENT_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return accepted


def latencies(store: Store, sink: Sink, accepted: dict[str, float], since: int) -> list[float]:
    """Seconds from each webhook's 200 to its last callback; raises if a callback is missing."""
    wait_settled(store)
    expected = expected_callbacks(store)
    arrivals: dict[str, list[float]] = {}
    for at, _path, trace_id in sink.records(since):
        arrivals.setdefault(trace_id, []).append(at)
    result = []
    for trace_id, accepted_at in accepted.items():
        got = arrivals.get(trace_id, [])
        if not expected.get(trace_id) or len(got) < expected[trace_id]:
            raise RuntimeError(
                f"trace {trace_id}: {len(got)} of {expected.get(trace_id)} callbacks"
            )
        result.append(max(got) - accepted_at)
    return result


def measure_end_to_end(
    store: Store, sink: Sink, env: dict[str, str], work_dir: Path, *, burst: int, seconds: float
) -> dict[str, Any]:
    """The maximum rate, then latency percentiles at half of it."""
    hooks = Webhooks()
    customers = [f"cus_bench{hooks.run}{i}" for i in range(max(burst // 4, 10))]
    with serving(env, work_dir) as client:
        send_paced(client, [hooks.customer(c) for c in customers], None)
        wait_settled(store)
        bodies = [hooks.invoice_paid(customers[i % len(customers)]) for i in range(burst)]
        since = len(sink.records())
        began = time.time()
        accepted = send_paced(client, bodies, None)
        latencies(store, sink, accepted, since)  # waits for and checks every callback
        max_rate = burst / (max(r[0] for r in sink.records(since)) - began)
        count = max(int(max_rate / 2 * seconds), burst // 2, 10)
        bodies = [hooks.invoice_paid(customers[i % len(customers)]) for i in range(count)]
        since = len(sink.records())
        paced = sorted(latencies(store, sink, send_paced(client, bodies, max_rate / 2), since))
    cuts = statistics.quantiles(paced, n=100, method="inclusive")
    return {
        "max_webhooks_per_second": round(max_rate, 1),
        "offered_webhooks_per_second": round(max_rate / 2, 1),
        "webhooks": count,
        "callbacks_per_webhook": len(sink.records(since)) / count,
        "p50_ms": round(cuts[49] * 1000, 1),
        "p90_ms": round(cuts[89] * 1000, 1),
        "p99_ms": round(cuts[98] * 1000, 1),
        "max_ms": round(paced[-1] * 1000, 1),
    }
