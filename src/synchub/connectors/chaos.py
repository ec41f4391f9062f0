"""Random faults for sandboxes under load: every request draws its fate (ADR 0011).

A `ChaosPlan` is a `FaultPlan` (faults queued by a test still come first) that, for each
request, may answer 5xx, answer 429 with `Retry-After`, or never answer. A 5xx or a timeout
happens either before the sandbox does the work or after it (the response is lost although
the vendor applied the write): the second case is the one that proves idempotency keys.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import asdict, dataclass

import httpx

from synchub.connectors.fault import Fault, FaultPlan

SERVER_ERRORS = (500, 502, 503, 504)


@dataclass
class ChaosRates:
    """How often requests fail, each rate a probability per request (they add up)."""

    error: float = 0.0  # 5xx; half before the work, half after it
    timeout: float = 0.0  # no answer at all; half before the work, half after it
    throttle: float = 0.0  # 429 with Retry-After, before the work
    retry_after_seconds: int = 1

    def as_dict(self) -> dict[str, float]:
        """The rates as plain data."""
        return {k: float(v) for k, v in asdict(self).items()}


class ChaosPlan(FaultPlan):
    """Queued faults first; otherwise a random fault at the configured rates."""

    def __init__(self, rates: ChaosRates, *, rng: random.Random | None = None) -> None:
        super().__init__()
        self.rates = rates
        self.counts: Counter[str] = Counter()
        self._rng = rng or random.Random()
        self._draw_lock = threading.Lock()

    def take(self, request: httpx.Request) -> Fault | None:
        """The fault for this request, if any; counts what it injects by kind."""
        queued = super().take(request)
        if queued is not None:
            return queued
        with self._draw_lock:
            draw, after, status = self._rng.random(), self._rng.random() < 0.5, self._status()
        fault, kind = self._fault_for(draw, after=after, status=status)
        if fault is not None:
            with self._draw_lock:
                self.counts[kind] += 1
                self.injected += 1
        return fault

    def _status(self) -> int:
        return self._rng.choice(SERVER_ERRORS)

    def _fault_for(self, draw: float, *, after: bool, status: int) -> tuple[Fault | None, str]:
        rates = self.rates
        when = "after" if after else "before"
        if draw < rates.error:
            return Fault(status=status, apply_then_fail=after), f"5xx_{when}"
        draw -= rates.error
        if draw < rates.timeout:
            return Fault(timeout=True, apply_then_fail=after), f"timeout_{when}"
        draw -= rates.timeout
        if draw < rates.throttle:
            retry_after = str(rates.retry_after_seconds)
            return Fault(status=429, headers={"Retry-After": retry_after}), "429"
        return None, ""
