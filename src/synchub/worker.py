"""The worker: normalise inbox events, fan out the outbox, deliver. In-process threads by
default; any number of `synchub worker` processes share the work on PostgreSQL.

`run_pass` does one synchronous pass (tests, replays). The background loop (`start`) keeps
its delivery threads busy instead: a DeliveryPool refills each slot as its attempt ends, and
the loop sleeps until an attempt ends, `wake()` is called (a webhook arrived; on PostgreSQL a
NOTIFY from a committed outbox write) or the poll interval passes (ADR 0014).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from synchub.bootstrap import Hub
from synchub.events.delivery import Claimed, DeliveryContext, deliver_due
from synchub.events.dispatch import Dispatcher, dispatch_outbox
from synchub.events.listener import WorkListener
from synchub.events.pool import DeliveryPool
from synchub.events.service import breaker_policies
from synchub.events.store import pending_work
from synchub.idempotency.service import purge_expired
from synchub.ingest import store as inbox_store
from synchub.ingest.service import IngestContext, process_inbox

log = structlog.get_logger(__name__)
PURGE_EVERY = timedelta(minutes=1)
INBOX_BATCH, DISPATCH_BATCH = 100, 500  # per turn of the loop
LISTEN_TIMEOUT_SECONDS = 10.0  # start() waits this long for the NOTIFY listener


@dataclass
class PassResult:
    """What one pass over all the work did."""

    inbox: int
    dispatched: int
    attempted: int

    @property
    def did_work(self) -> bool:
        """Whether anything moved."""
        return bool(self.inbox or self.dispatched or self.attempted)


@dataclass
class _Todo:
    """What one turn of the loop should look at."""

    inbox: bool = False
    dispatch: bool = False
    claim: bool = False


class Worker:
    """Runs the road from inbox to destinations, pass after pass."""

    def __init__(self, hub: Hub, *, worker_id: str | None = None) -> None:
        self.hub = hub
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._pool = ThreadPoolExecutor(
            max_workers=hub.settings.worker_threads, thread_name_prefix="synchub-deliver"
        )
        self._stop = threading.Event()
        self._wake = threading.Event()  # new work upstream: run inbox and dispatch
        self._notice = threading.Event()  # a NOTIFY: new outbox rows or deliveries
        self._signal = threading.Event()  # anything to look at: a wake or an attempt ended
        self._listener: WorkListener | None = None
        self._thread: threading.Thread | None = None
        self._purged_at: datetime | None = None
        owners = {(o.entity, o.field_name): o.owner for o in hub.register.ownership}
        self.ingest = IngestContext(
            db=hub.db,
            readers=hub.readers,
            owner_of=lambda e, f: owners.get((e, f)),
            clock=hub.clock,
            app_version=hub.version,
            thresholds_of=hub.register.match_thresholds,
        )
        self.delivery = DeliveryContext(
            db=hub.db,
            destinations=hub.destinations_for,
            policy_for=hub.policy_for,
            clock=hub.clock,
            worker_id=self.worker_id,
            concurrency=hub.settings.worker_threads,
            breaker_for=breaker_policies(hub.register),
            lease=timedelta(seconds=hub.settings.delivery_lease_seconds),
        )
        self.dispatcher = Dispatcher()
        self.deliveries = DeliveryPool(
            self.delivery, self._pool, size=hub.settings.worker_threads, on_done=self._signal.set
        )

    def purge_if_due(self) -> None:
        """Once a minute, delete what retention rules say must go (idempotency keys)."""
        now = self.hub.clock.now()
        if self._purged_at is not None and now - self._purged_at < PURGE_EVERY:
            return
        with self.hub.db.write() as conn:
            purge_expired(conn, now=now)
        self._purged_at = now

    def run_pass(self) -> PassResult:
        """One pass: inbox, then outbox fan-out, then due deliveries."""
        self.purge_if_due()
        inbox = process_inbox(self.ingest)
        dispatched = dispatch_outbox(
            self.hub.db, self.hub.register, self.hub.clock, state=self.dispatcher
        )
        delivered = deliver_due(
            self.delivery, pool=self._pool, limit=self.hub.settings.worker_threads
        )
        return PassResult(
            inbox=inbox.processed + inbox.parked + inbox.failed,
            dispatched=dispatched,
            attempted=delivered.attempted,
        )

    def is_idle(self) -> bool:
        """Whether nothing is waiting anywhere (scheduled retries count as waiting)."""
        with self.hub.db.read() as conn:
            inbox = inbox_store.count_by_status(conn)
            work = pending_work(conn)
        return not (
            inbox.get("pending")
            or inbox.get("parked")
            or work["undispatched"]
            or work["active_deliveries"]
        )

    def wake(self) -> None:
        """Ask the loop to look for new work now (e.g. a webhook just arrived)."""
        self._wake.set()
        self._signal.set()

    def _notified(self) -> None:
        """A NOTIFY: new outbox rows or deliveries (not inbox work: that comes by wake())."""
        self._notice.set()
        self._signal.set()

    def _upstream(self, *, inbox: bool) -> PassResult:
        """Inbox (when asked), then fan-out; deliveries the fan-out created are claimed into
        free slots in its own transaction and started once it has committed."""
        self.purge_if_due()
        done = process_inbox(self.ingest, limit=INBOX_BATCH) if inbox else None
        claimed: list[Claimed] = []

        def claim(conn: Any) -> int:
            claimed.extend(self.deliveries.claim_in(conn))
            return len(claimed)

        dispatched = dispatch_outbox(self.hub.db, self.hub.register, self.hub.clock,
                                     limit=DISPATCH_BATCH, state=self.dispatcher, then=claim,
                                     notify_as=self.worker_id)  # fmt: skip
        self.deliveries.start(claimed)
        moved = done.processed + done.parked + done.failed if done else 0
        return PassResult(moved, dispatched, len(claimed))

    def _step(self, todo: _Todo) -> _Todo:
        """One turn of the loop; what may be left to do at once."""
        ended = self.deliveries.reap()
        more = _Todo()
        took_all = False
        if todo.inbox or todo.dispatch:
            free = self.deliveries.free
            done = self._upstream(inbox=todo.inbox)
            # Only a full batch leaves work behind; anything newer wakes the loop (a NOTIFY or
            # wake()) or waits for the poll, so the new attempts get the CPU meanwhile.
            more.inbox = done.inbox >= INBOX_BATCH
            more.dispatch = more.inbox or done.dispatched >= DISPATCH_BATCH
            took_all = bool(done.dispatched) and done.attempted < free  # all that was due
        free = self.deliveries.free
        if free and not took_all and (todo.claim or ended):
            more.claim = self.deliveries.fill() == free
        self.deliveries.renew_if_due()
        return more

    def _loop(self, idle_sleep: float) -> None:
        next_poll, more = 0.0, _Todo()
        while not self._stop.is_set():
            self._signal.clear()
            woken, noticed = self._wake.is_set(), self._notice.is_set()
            self._wake.clear()
            self._notice.clear()
            polled = woken or time.monotonic() >= next_poll
            if polled:
                next_poll = time.monotonic() + idle_sleep
            fresh = polled or noticed
            todo = _Todo(polled or more.inbox, fresh or more.dispatch, fresh or more.claim)
            try:
                more = self._step(todo)
            except Exception:
                log.exception("worker.pass_failed", worker_id=self.worker_id)
                more = _Todo()
            if more.inbox or more.dispatch or (more.claim and self.deliveries.free):
                continue
            until_poll = max(0.0, next_poll - time.monotonic())
            self._signal.wait(min(until_poll, self.deliveries.seconds_to_heartbeat()))
        self.deliveries.drain()

    def start(self, *, idle_sleep: float = 0.2) -> None:
        """Run the loop in a background thread until stop(); on PostgreSQL, also listen for
        NOTIFYs of new work, so polling every `idle_sleep` seconds is only the fallback."""
        if not self.hub.db.is_sqlite:
            self._listener = WorkListener(self.hub.db, self._notified, ignore=self.worker_id)
            self._listener.start()
            if not self._listener.wait_listening(LISTEN_TIMEOUT_SECONDS):  # it keeps trying
                log.warning("worker.not_listening", worker_id=self.worker_id)
        self._thread = threading.Thread(
            target=self._loop, args=(idle_sleep,), name="synchub-worker", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Let running attempts finish and stop."""
        self._stop.set()
        self._signal.set()
        if self._listener is not None:
            self._listener.stop()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._pool.shutdown(wait=True)
