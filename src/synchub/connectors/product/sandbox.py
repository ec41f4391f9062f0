"""An in-process example product that receives synchub's signed entitlement callbacks.

It verifies Standard Webhooks signatures (±300 s), de-duplicates on `webhook-id`, and keeps
each account's entitlement, so tests and the demo can check what the product believes.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from synchub.connectors import standard_webhooks
from synchub.connectors.sandbox import Sandbox, json_response
from synchub.core.clock import Clock, SystemClock
from synchub.core.errors import SignatureError

# The secret of the product behind the shared sandbox server (`synchub sandbox serve`): every
# synchub process must sign for it, so it is fixed and public, like the other sandbox tokens.
SHARED_SANDBOX_SECRET = "whsec_c3luY2h1Yi1zYW5kYm94LXByb2R1Y3QtY2FsbGJhY2s="  # noqa: S105


class ProductSandbox(Sandbox):
    """The product's callback endpoint and its accounts."""

    vendor = "product"

    def __init__(
        self, *, secret: str, path: str = "/synchub/callbacks", clock: Clock | None = None
    ) -> None:
        super().__init__()
        self.secret = secret
        self.clock = clock or SystemClock()
        self.accounts: dict[str, dict[str, Any]] = {}
        self.seen: set[str] = set()
        self.duplicates = 0
        self.route("POST", re.escape(path), self._callback)
        accounts = path.rstrip("/").rpartition("/")[0] + "/accounts"
        self.route("GET", re.escape(accounts) + r"/([^/]+)", self._account)

    def to_state(self) -> dict[str, Any]:
        """Each account's entitlement and the webhook ids already applied (the secret is
        each process's own: the hub signs with whatever its sandbox holds)."""
        with self.lock:
            return {"accounts": self.accounts, "seen": sorted(self.seen),
                    "duplicates": self.duplicates}  # fmt: skip

    def from_state(self, state: dict[str, Any]) -> None:
        """Continue a kept product: a callback applied before is still a duplicate."""
        with self.lock:
            self.accounts = dict(state["accounts"])
            self.seen = set(state["seen"])
            self.duplicates = int(state["duplicates"])

    def _callback(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        try:
            msg_id = standard_webhooks.verify(
                request.content,
                dict(request.headers),
                secret=self.secret,
                now=int(self.clock.now().timestamp()),
            )
        except SignatureError:
            return json_response(401, {"error": "bad signature"})
        if msg_id in self.seen:
            self.duplicates += 1
            return httpx.Response(204)
        body = json.loads(request.content)
        data = body["data"]
        account = self.accounts.setdefault(data["customer_id"], {"history": []})
        account.update(entitled=data["entitled"], billing_status=data["billing_status"])
        account["history"].append(body["type"])
        self.seen.add(msg_id)
        self.record(request, entity=f"accounts/{data['customer_id']}", key=msg_id, created=True)
        return httpx.Response(204)

    def _account(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        """What the product believes of one account (signed like callbacks; reconciliation)."""
        try:
            standard_webhooks.verify(
                request.content,
                dict(request.headers),
                secret=self.secret,
                now=int(self.clock.now().timestamp()),
            )
        except SignatureError:
            return json_response(401, {"error": "bad signature"})
        account = self.accounts.get(match.group(1))
        if account is None:
            return json_response(404, {"error": "no such account"})
        return json_response(
            200,
            {
                "customer_id": match.group(1),
                "entitled": account["entitled"],
                "billing_status": account["billing_status"],
            },
        )
