"""A continuous delivery pool: every thread keeps itself busy (ADR 0014).

`deliver_due` claims a batch and waits for all of it; one slow attempt then idles every other
thread. In the pool each slot is a thread that attempts a delivery and, in the transaction
that records the outcome, claims its next one; it gives its slot back only when nothing is
due. Whoever drives the pool (the worker's loop thread) claims one delivery per free slot
when new work may have arrived, and renews the leases of running attempts every heartbeat.
A slot holds at most one claimed delivery, so the pool never holds more claims than it has
threads (ADR 0004).

Group commit: slots whose attempts end together write their outcomes in one transaction, each
in a savepoint of its own, followed in it by the claims for those slots' next deliveries
(`record_group`). The first slot to finish leads: it waits until no other slot is still
calling its destination, or `GROUP_WINDOW_SECONDS` at most, then commits for all that are
waiting; slots that finish meanwhile wait for the next group. An outcome is still committed
before the next attempt of its (destination, aggregate) can be claimed, and metrics follow
the commit.
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
    attempt,
    claim_some,
    claim_work,
    heartbeat_seconds,
    renew,
)
from synchub.events.outcome import Finished, record_group

log = structlog.get_logger(__name__)

# How long the first slot of a group waits for the others still calling their destinations.
GROUP_WINDOW_SECONDS = 0.002


class _Entry:
    """One slot's finished attempt, waiting for its group to commit."""

    def __init__(self, finished: Finished, want_next: bool) -> None:
        self.finished = finished
        self.want_next = want_next
        self.result: tuple[str, Claimed | None] | BaseException | None = None


class _GroupCommit:
    """Leader/follower group commit of the slots' outcomes (see the module docstring)."""

    def __init__(self, ctx: DeliveryContext, window: float) -> None:
        self.ctx = ctx
        self.window = window
        self._cond = threading.Condition()
        self._queue: list[_Entry] = []
        self._committing = False
        self._attempting = 0  # slots calling their destinations (claimed, outcome not queued)

    def started(self, count: int = 1) -> None:
        """`count` slots have claimed deliveries they are about to attempt."""
        with self._cond:
            self._attempting += count

    def abandoned(self) -> None:
        """A slot's attempt ended without an outcome to write (its thread failed)."""
        with self._cond:
            self._attempting -= 1
            self._cond.notify_all()

    def submit(self, finished: Finished, *, want_next: bool) -> tuple[str, Claimed | None]:
        """Write this attempt's outcome with whatever else is waiting; its outcome's name and
        the slot's next delivery (None: give the slot back)."""
        entry = _Entry(finished, want_next)
        with self._cond:
            self._attempting -= 1
            self._queue.append(entry)
            self._cond.notify_all()
            while entry.result is None and self._committing:
                self._cond.wait()
            if entry.result is not None:
                return _unwrap(entry.result)
            self._committing = True  # this slot leads the next group
            deadline = time.monotonic() + self.window
            while self._attempting > 0 and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            batch, self._queue = self._queue, []
        results: list[tuple[str, Claimed | None] | BaseException]
        try:
            results = record_group(self.ctx, [e.finished for e in batch],
                                   claim=claim_some(self.ctx),
                                   wants=[e.want_next for e in batch])  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - the transaction failed: each slot raises it
            results = [exc] * len(batch)
        with self._cond:
            for item, result in zip(batch, results, strict=True):
                item.result = result
                if not isinstance(result, BaseException) and result[1] is not None:
                    self._attempting += 1
            self._committing = False
            self._cond.notify_all()
        return _unwrap(results[batch.index(entry)])


def _unwrap(
    result: tuple[str, Claimed | None] | BaseException,
) -> tuple[str, Claimed | None]:
    if isinstance(result, BaseException):
        raise result
    return result


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
        group_window: float = GROUP_WINDOW_SECONDS,
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
        self._group = _GroupCommit(ctx, group_window)

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
            self._group.started(len(claimed))
            for item in claimed:
                slot = _Slot()
                slot.delivery_id = item.delivery.id
                self._slots[slot] = self._executor.submit(self._run, slot, item)

    def _run(self, slot: _Slot, claimed: Claimed) -> None:
        """A slot's thread: attempt; record and claim the next with the other slots' outcomes
        in one transaction (group commit); repeat."""
        item: Claimed | None = claimed
        try:
            while item is not None:
                try:
                    finished = attempt(self.ctx, item)
                except BaseException:
                    self._group.abandoned()
                    raise
                want = not self._closing.is_set()
                outcome, item = self._group.submit(finished, want_next=want)
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
