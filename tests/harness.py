"""A hub wired to sandboxes and driven synchronously, with an injected clock (no sleeping)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from synchub.api.app import create_app
from synchub.bootstrap import Hub, Sandboxes, build_hub
from synchub.config import Settings
from synchub.connectors.hubspot.sandbox import HubSpotSandbox
from synchub.connectors.product.sandbox import ProductSandbox
from synchub.connectors.standard_webhooks import new_secret
from synchub.connectors.stripe.sandbox import StripeSandbox
from synchub.connectors.stripe.webhooks import sign_header
from synchub.connectors.xero.sandbox import XeroSandbox
from synchub.core.clock import FixedClock
from synchub.db import Database
from synchub.worker import Worker

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Harness:
    """The hub, its sandboxes, an HTTP client for its API and a synchronous worker."""

    hub: Hub
    boxes: Sandboxes
    clock: FixedClock
    http: TestClient
    worker: Worker
    posted: list[bytes] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)

    def post_event(
        self, body: bytes, *, timestamp: int | None = None, secret: str | None = None
    ) -> Any:
        """POST one Stripe event body, signed as Stripe would sign it now."""
        stamp = int(self.clock.now().timestamp()) if timestamp is None else timestamp
        header = sign_header(
            body, secret=secret or self.hub.webhook_secrets["stripe"][0], timestamp=stamp
        )
        return self.http.post(
            "/v1/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        )

    def deliver_stripe(self) -> None:
        """Send the Stripe sandbox's pending webhooks to the hub, remembering each body."""
        import json

        pending, self.boxes.stripe.outbox = self.boxes.stripe.outbox, []
        for item in pending:
            body = json.dumps(item.event, indent=2).encode()
            for _ in range(item.copies):
                self.posted.append(body)
                self.replies.append(self.post_event(body).json())
        self.settle()

    def settle(self, *, max_rounds: int = 500) -> None:
        """Run worker passes, moving the clock over backoff waits, until nothing is left."""
        for _ in range(max_rounds):
            if self.worker.run_pass().did_work:
                continue
            if self.worker.is_idle():
                return
            self.clock.advance(timedelta(seconds=5))
        raise AssertionError("the hub did not settle")


def make_harness(
    db: Database,
    clock: FixedClock,
    *,
    data_dir: Path,
    register_dir: Path | None = None,
) -> Harness:
    """Build a hub over a migrated database with fresh sandboxes sharing the test clock."""
    boxes = Sandboxes(
        stripe=StripeSandbox(clock=FixedClock(clock.now() - timedelta(days=1))),
        hubspot=HubSpotSandbox(),
        xero=XeroSandbox(),
        product=ProductSandbox(secret=new_secret(), clock=clock),
    )
    settings = Settings(
        register_dir=register_dir or REPO / "register",
        data_dir=data_dir,
        database_url="sqlite://",  # the Database passed in is what is used
    )
    hub = build_hub(settings, clock=clock, sandboxes=boxes, db=db)
    worker = Worker(hub)
    return Harness(
        hub=hub, boxes=boxes, clock=clock, http=TestClient(create_app(hub)), worker=worker
    )
