"""What every in-process vendor sandbox shares: routing, JSON replies, auth and faults."""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
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
        self.state_path: Path | None = None  # set: the state is kept in this file (keep_state)
        self._unsaved = False  # a write was applied since the state was last saved

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Register a handler for a method and a full-match path pattern."""
        self._routes.append((method, re.compile(pattern), handler))

    def record(
        self, request: httpx.Request, *, entity: str, key: str | None = None, created: bool = False
    ) -> None:
        """Note one applied write (the lock is held): the object, its natural key, whether new.

        The request's `traceparent` and `Idempotency-Key` are kept, so a test can tell which
        canonical event caused each change and in what order changes reached the vendor; a
        sandbox server also notes how long after receiving the request it applied it.
        """
        received = request.extensions.get("sandbox_received_at")
        self._unsaved = True
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
                "waited_seconds": None if received is None else time.monotonic() - received,
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
        with self.lock:
            response = self.respond(request)
            if self._unsaved:
                self.save_state()
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

    # -- state kept across processes (in-process sandboxes with a data directory) ------------

    def to_state(self) -> dict[str, Any]:
        """The vendor's state as JSON-able data (objects and id counters; override)."""
        return {}

    def from_state(self, state: dict[str, Any]) -> None:
        """Take up state written by `to_state`, in this or an earlier process (override)."""

    def keep_state(self, path: Path) -> None:
        """Keep the state in `path`: take up what an earlier process left there now, and save
        after every applied write, so a later process continues the same vendor and never
        issues an id again. One process at a time: several share a sandbox server (ADR 0011).
        """
        with self.lock:
            self.state_path = path
            if path.exists():
                state = json.loads(path.read_text(encoding="utf-8"), object_hook=_decode)
                if state.get("vendor") != self.vendor:
                    raise ValueError(f"{path} holds no {self.vendor} sandbox state")
                self.from_state(state)

    def changed(self) -> None:
        """Note a change made other than through a request (a person in the vendor's UI, the
        vendor's own billing run): saved at once when the state is kept."""
        with self.lock:
            self._unsaved = True
            self.save_state()

    def save_state(self) -> None:
        """Write the state to its file if it is kept: a temporary file, then an atomic rename,
        under the lock, so a reader never sees half a file."""
        with self.lock:
            self._unsaved = False
            if self.state_path is None:
                return
            text = json.dumps({"vendor": self.vendor, **self.to_state()}, default=_encode)
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(
                dir=self.state_path.parent, prefix=f".{self.vendor}.", suffix=".tmp"
            )
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(text)
                os.replace(temp, self.state_path)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise


def _encode(value: Any) -> Any:
    """Exact amounts survive the file (Xero's are decimals); sets as sorted lists."""
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"cannot keep {type(value).__name__} in sandbox state")


def _decode(value: dict[str, Any]) -> Any:
    if value.keys() == {"$decimal"}:
        return Decimal(value["$decimal"])
    return value
