"""The worker: normalise inbox events, fan out the outbox, deliver. In-process threads by
default; any number of `synchub worker` processes share the work on PostgreSQL."""

from __future__ import annotations

import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from synchub.bootstrap import Hub
from synchub.events.delivery import DeliveryContext, deliver_due
from synchub.events.dispatch import Dispatcher, dispatch_outbox
from synchub.events.service import breaker_policies
from synchub.events.store import pending_work
from synchub.idempotency.service import purge_expired
from synchub.ingest import store as inbox_store
from synchub.ingest.service import IngestContext, process_inbox

log = structlog.get_logger(__name__)
PURGE_EVERY = timedelta(minutes=1)


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


class Worker:
    """Runs the road from inbox to destinations, pass after pass."""

    def __init__(self, hub: Hub, *, worker_id: str | None = None) -> None:
        self.hub = hub
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._pool = ThreadPoolExecutor(
            max_workers=hub.settings.worker_threads, thread_name_prefix="synchub-deliver"
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._purged_at: datetime | None = None
        owners = {(o.entity, o.field_name): o.owner for o in hub.register.ownership}
        self.ingest = IngestContext(
            db=hub.db,
            readers=hub.readers,
            owner_of=lambda e, f: owners.get((e, f)),
            clock=hub.clock,
            app_version=hub.version,
        )
        self.delivery = DeliveryContext(
            db=hub.db,
            destinations=hub.destinations_for,
            policy_for=hub.policy_for,
            clock=hub.clock,
            worker_id=self.worker_id,
            concurrency=hub.settings.worker_threads,
            breaker_for=breaker_policies(hub.register),
        )
        self.dispatcher = Dispatcher()

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
        """Ask the loop to run a pass now (e.g. a webhook just arrived)."""
        self._wake.set()

    def _loop(self, idle_sleep: float) -> None:
        while not self._stop.is_set():
            try:
                result = self.run_pass()
            except Exception:
                log.exception("worker.pass_failed", worker_id=self.worker_id)
                result = PassResult(0, 0, 0)
            if not result.did_work:
                self._wake.wait(idle_sleep)
                self._wake.clear()

    def start(self, *, idle_sleep: float = 0.2) -> None:
        """Run passes in a background thread until stop()."""
        self._thread = threading.Thread(
            target=self._loop, args=(idle_sleep,), name="synchub-worker", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Finish the current pass and stop."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._pool.shutdown(wait=True)
