"""What every in-process vendor sandbox shares: routing, JSON replies, auth and faults."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from typing import Any

import httpx

from synchub.connectors.fault import FaultPlan, fault_response

Handler = Callable[[httpx.Request, re.Match[str]], httpx.Response]


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    """A JSON reply."""
    return httpx.Response(
        status,
        headers={"Content-Type": "application/json", **(headers or {})},
        content=json.dumps(body).encode(),
    )


class Sandbox:
    """Base for vendor sandboxes: an httpx transport handler with routes, a lock and faults."""

    vendor = "sandbox"

    def __init__(self) -> None:
        self.faults = FaultPlan()
        self.lock = threading.RLock()
        self.requests: list[tuple[str, str]] = []
        # Every write the sandbox applied, in the order it applied them (chaos checks read it).
        self.journal: list[dict[str, Any]] = []
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Register a handler for a method and a full-match path pattern."""
        self._routes.append((method, re.compile(pattern), handler))

    def record(
        self, request: httpx.Request, *, entity: str, key: str | None = None, created: bool = False
    ) -> None:
        """Note one applied write (the lock is held): the object, its natural key, whether new.

        The request's `traceparent` and `Idempotency-Key` are kept, so a test can tell which
        canonical event caused each change and in what order changes reached the vendor.
        """
        self.journal.append(
            {
                "n": len(self.journal) + 1,
                "method": request.method,
                "path": request.url.path,
                "entity": entity,
                "key": key,
                "created": created,
                "idempotency_key": request.headers.get("Idempotency-Key"),
                "traceparent": request.headers.get("traceparent"),
            }
        )

    def transport(self) -> httpx.MockTransport:
        """An httpx transport that sends every request to this sandbox."""
        return httpx.MockTransport(self.handle)

    def authorised(self, request: httpx.Request) -> bool:
        """Whether the request carries acceptable credentials (override per vendor)."""
        return True

    def unauthorised(self) -> httpx.Response:
        """The vendor's reply to bad credentials."""
        return json_response(401, {"message": "unauthorised"})

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request as the vendor would, unless a fault is queued for it."""
        fault = self.faults.take(request)
        if fault is not None:
            early = fault_response(fault, request)
            if early is not None:
                return early
        response = self.respond(request)
        if fault is not None and fault.apply_then_fail:
            if fault.timeout:
                raise httpx.ReadTimeout("sandbox: response lost after applying", request=request)
            return httpx.Response(fault.status or 502, headers=fault.headers or {})
        return response

    def respond(self, request: httpx.Request) -> httpx.Response:
        """The vendor's real answer: credentials checked, then the route's handler."""
        with self.lock:
            self.requests.append((request.method, request.url.path))
            if not self.authorised(request):
                return self.unauthorised()
            return self._dispatch(request)

    def _dispatch(self, request: httpx.Request) -> httpx.Response:
        for method, pattern, handler in self._routes:
            if method == request.method and (match := pattern.fullmatch(request.url.path)):
                return handler(request, match)
        return json_response(404, {"message": f"no route {request.method} {request.url.path}"})
