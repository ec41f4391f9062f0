"""A continuous delivery pool: every thread keeps itself busy (ADR 0014).

`deliver_due` claims a batch and waits for all of it; one slow attempt then idles every other
thread. In the pool each slot is a thread that attempts a delivery and, in the transaction
that records the outcome, claims its next one; it gives its slot back only when nothing is
due. Whoever drives the pool (the worker's loop thread) claims one delivery per free slot
when new work may have arrived, and renews the leases of running attempts every heartbeat.
A slot holds at most one claimed delivery, so the pool never holds more claims than it has
threads (ADR 0004).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import structlog

from synchub.events.delivery import (
    Claimed,
    DeliveryContext,
    DeliveryStats,
    claim_work,
    deliver_one,
    heartbeat_seconds,
    renew,
)

log = structlog.get_logger(__name__)


class _Slot:
    """One thread's place in the pool and the delivery it is attempting."""

    def __init__(self) -> None:
        self.delivery_id: str | None = None


class DeliveryPool:
    """Up to `size` deliveries in flight at once, each thread claiming its next itself."""

    def __init__(
        self,
        ctx: DeliveryContext,
        executor: ThreadPoolExecutor,
        *,
        size: int,
        on_done: Callable[[], None] = lambda: None,
    ) -> None:
        self.ctx = ctx
        self.size = size
        self._executor = executor
        self._on_done = on_done  # called from a slot's thread when it gives the slot back
        self._slots: dict[_Slot, Future[None]] = {}
        self._renewed_at = time.monotonic()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.stats = DeliveryStats()

    @property
    def free(self) -> int:
        """Slots with no thread in them."""
        with self._lock:
            return self.size - len(self._slots)

    def claim_in(self, conn: Any) -> list[Claimed]:
        """Claim one delivery per free slot in the caller's transaction; `start` them after it
        commits (a lease that rolled back must never be attempted)."""
        free = self.free
        return claim_work(self.ctx, conn, limit=free) if free > 0 else []

    def fill(self) -> int:
        """Claim one delivery per free slot in a transaction of its own and start them."""
        if self.free <= 0:
            return 0
        with self.ctx.db.write() as conn:
            claimed = self.claim_in(conn)
        self.start(claimed)
        return len(claimed)

    def start(self, claimed: list[Claimed]) -> None:
        """Give each delivery whose claim has committed a slot of its own."""
        with self._lock:
            if len(self._slots) + len(claimed) > self.size:
                raise RuntimeError("claimed more deliveries than the pool has free slots")
            for item in claimed:
                slot = _Slot()
                slot.delivery_id = item.delivery.id
                self._slots[slot] = self._executor.submit(self._run, slot, item)

    def _run(self, slot: _Slot, claimed: Claimed) -> None:
        """A slot's thread: attempt, record and claim the next in one transaction, repeat."""
        item: Claimed | None = claimed
        try:
            while item is not None:
                outcome, item = deliver_one(self.ctx, item, claim_next=not self._closing.is_set())
                with self._lock:
                    self.stats.count(outcome)
                    slot.delivery_id = item.delivery.id if item else None
        finally:
            with self._lock:
                slot.delivery_id = None
            self._on_done()

    def reap(self) -> int:
        """Take back the slots whose threads have ended; how many."""
        with self._lock:
            done = [(s, f) for s, f in self._slots.items() if f.done()]
            for slot, _ in done:
                del self._slots[slot]
        for _, future in done:
            if (error := future.exception()) is not None:  # its lease runs out; it is retaken
                log.error("delivery.slot_failed", worker_id=self.ctx.worker_id,
                          exc_info=error)  # fmt: skip
        return len(done)

    def renew_if_due(self) -> None:
        """Renew the leases of running attempts once per heartbeat."""
        if self.seconds_to_heartbeat() > 0:
            return
        self._renewed_at = time.monotonic()
        with self._lock:
            ids = [s.delivery_id for s in self._slots if s.delivery_id is not None]
        if ids:
            renew(self.ctx, ids)

    def seconds_to_heartbeat(self) -> float:
        """How long until the next renewal is due."""
        return max(0.0, self._renewed_at + heartbeat_seconds(self.ctx) - time.monotonic())

    def drain(self) -> None:
        """Claim nothing more; wait for running attempts to end, renewing leases meanwhile."""
        self._closing.set()
        while True:
            with self._lock:
                running = set(self._slots.values())
            if not running:
                return
            wait(running, timeout=max(self.seconds_to_heartbeat(), 0.01))
            self.reap()
            self.renew_if_due()
