"""Fault injection for the in-process vendor sandboxes: the failures real vendors produce."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

import httpx


@dataclass
class Fault:
    """Answer the next `times` matching requests with this failure instead of the real reply."""

    status: int | None = None  # e.g. 502, 429
    headers: dict[str, str] | None = None
    body: bytes = b""
    timeout: bool = False  # raise a read timeout (the request may or may not have been applied)
    apply_then_fail: bool = False  # do the work, then lose the response (the nastiest case)
    delay_seconds: float = 0.0
    times: int = 1
    method: str | None = None
    path: str | None = None  # a regular expression matched against the URL path


class FaultPlan:
    """A thread-safe queue of faults a sandbox consults before answering each request."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.injected = 0

    def add(self, fault: Fault) -> None:
        """Queue a fault."""
        with self._lock:
            self._faults.append(fault)

    def take(self, request: httpx.Request) -> Fault | None:
        """The fault to apply to this request, if any (consumes one use of it)."""
        with self._lock:
            for fault in self._faults:
                if fault.method and fault.method != request.method:
                    continue
                if fault.path and not re.search(fault.path, request.url.path):
                    continue
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                self.injected += 1
                return fault
        return None


def fault_response(fault: Fault, request: httpx.Request) -> httpx.Response | None:
    """Produce the failure for a fault taken before the work; None if the work should run."""
    if fault.delay_seconds:
        time.sleep(fault.delay_seconds)
    if fault.timeout and not fault.apply_then_fail:
        raise httpx.ReadTimeout("sandbox: injected timeout", request=request)
    if fault.status is not None and not fault.apply_then_fail:
        return httpx.Response(fault.status, headers=fault.headers or {}, content=fault.body)
    return None
