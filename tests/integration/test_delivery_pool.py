"""The continuous delivery pool and wake-ups on new work (ADR 0014)."""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from synchub.connectors.base import Attempt, Delivered, OutboundEvent
from synchub.core.clock import FixedClock
from synchub.db import Database
from synchub.events import store
from synchub.events.delivery import DeliveryContext
from synchub.events.dispatch import dispatch_outbox
from synchub.events.listener import WorkListener
from synchub.events.outbox import EventContext, emit_event
from synchub.events.pool import DeliveryPool
from synchub.register.model import Connection, Flow, Mode, Register, RetryPolicy
from tests.harness import make_harness

POLICY = RetryPolicy(base_seconds=1, cap_seconds=60, max_attempts=3, max_age_seconds=3600)
PATIENCE = 20.0  # seconds a test waits for something that should happen far sooner
PG_ONLY = "LISTEN/NOTIFY is PostgreSQL's"


def _register() -> Register:
    conn = Connection(name="dest", system="product", mode=Mode.SANDBOX, owner="o",
                      criticality="low", retry=POLICY)  # fmt: skip
    flow = Flow(name="f", source="stripe", destination="dest", owner="o",
                events=("customer.updated",))  # fmt: skip
    return Register(workspace="w", timezone="Pacific/Auckland", connections={"dest": conn},
                    flows=(flow,), ownership=())  # fmt: skip


def _emit(db: Database, clock: FixedClock, *changes: tuple[str, str]) -> None:
    """Write (customer, label) changes to the outbox in one transaction."""
    ctx = EventContext(workspace="w", source="/synchub/w/stripe", traceparent=None,
                       mapping_version=None, app_version="test", now=clock.now())  # fmt: skip
    with db.write() as conn:
        for customer, label in changes:
            emit_event(conn, ctx, event_type="customer.updated",
                       record={"id": customer, "label": label}, aggregate_id=customer,
                       changed=[])  # fmt: skip


def _context(db: Database, clock: FixedClock, dest: object, **extra: object) -> DeliveryContext:
    return DeliveryContext(db=db, destinations=lambda _ws: {"dest": dest},  # type: ignore[dict-item]
                           policy_for=lambda _n: POLICY, clock=clock, worker_id="w1",
                           **extra)  # type: ignore[arg-type]  # fmt: skip


def _in_flight(db: Database, owner: str) -> int:
    d = store.deliveries
    with db.read() as conn:
        query = sa.select(sa.func.count()).where(
            d.c.status == "in_flight", d.c.lease_owner == owner
        )
        return int(conn.execute(query).scalar_one())


def _drive(pool: DeliveryPool, done: Callable[[], bool], signal: threading.Event) -> None:
    """What the worker's loop does: reap, refill, renew; until `done`."""
    deadline = time.monotonic() + PATIENCE
    while not done():
        assert time.monotonic() < deadline, "the pool did not finish"
        signal.clear()
        pool.reap()
        pool.fill()
        pool.renew_if_due()
        signal.wait(0.05)
    pool.drain()


class CountingDestination:
    """Holds the first calls until `size` run at once; counts leases held at every call and
    records what each customer received, in order."""

    name = "dest"

    def __init__(self, db: Database, size: int) -> None:
        self.db, self.size = db, size
        self.lock = threading.Condition()
        self.running = self.most_running = self.most_leased = self.calls = 0
        self.wave_full = False
        self.applied: dict[str, list[str]] = defaultdict(list)

    def deliver(self, event: OutboundEvent, attempt: Attempt) -> Delivered:
        leased = _in_flight(self.db, "w1")
        with self.lock:
            self.calls += 1
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            self.most_leased = max(self.most_leased, leased)
            self.wave_full = self.wave_full or self.running >= self.size
            self.lock.notify_all()
            if self.calls <= self.size:  # the first wave: every slot must be taken at once
                self.lock.wait_for(lambda: self.wave_full, timeout=PATIENCE)
            self.applied[event.subject].append(event.payload["object"]["label"])
            self.running -= 1
        return Delivered("ok")


def test_the_pool_fills_every_slot_never_more_and_keeps_each_customers_order(
    db: Database, clock: FixedClock
) -> None:
    customers = [f"cus_{n}" for n in range(6)]
    _emit(db, clock, *[(c, f"{c}-{k}") for k in range(3) for c in customers])
    dispatch_outbox(db, _register(), clock)
    dest, signal = CountingDestination(db, size=4), threading.Event()

    with ThreadPoolExecutor(max_workers=4) as executor:
        pool = DeliveryPool(_context(db, clock, dest), executor, size=4, on_done=signal.set)
        _drive(pool, lambda: pool.stats.attempted == 18, signal)

    assert dest.most_running == 4
    assert dest.most_leased <= 4
    assert {c: dest.applied[c] for c in customers} == {
        c: [f"{c}-{k}" for k in range(3)] for c in customers
    }
    with db.read() as conn:
        assert {r["status"] for r in store.list_deliveries(conn)} == {"succeeded"}


class OneSlowCustomer:
    """Customer `cus_slow` is held until every other customer's change has been applied."""

    name = "dest"

    def __init__(self, others: int) -> None:
        self.others, self.applied = others, queue.Queue[str]()
        self.rest_done = threading.Event()
        self.count = 0
        self.lock = threading.Lock()

    def deliver(self, event: OutboundEvent, attempt: Attempt) -> Delivered:
        if event.subject == "cus_slow":
            self.rest_done.wait(PATIENCE)
        else:
            with self.lock:
                self.count += 1
                if self.count == self.others:
                    self.rest_done.set()
        self.applied.put(event.subject)
        return Delivered("ok")


def test_a_slow_attempt_does_not_hold_back_the_other_slots(db: Database, clock: FixedClock) -> None:
    """With batch-and-wait, the slow call's batch mates would leave their threads idle."""
    _emit(db, clock, ("cus_slow", "s"), *[(f"cus_{n}", "x") for n in range(8)])
    dispatch_outbox(db, _register(), clock)
    dest, signal = OneSlowCustomer(others=8), threading.Event()

    with ThreadPoolExecutor(max_workers=2) as executor:
        pool = DeliveryPool(_context(db, clock, dest), executor, size=2, on_done=signal.set)
        _drive(pool, lambda: pool.stats.attempted == 9, signal)

    order = [dest.applied.get_nowait() for _ in range(9)]
    assert order[-1] == "cus_slow"  # the other slot kept going meanwhile


class OutlivesItsLease:
    """An attempt that runs past its lease; meanwhile another worker tries to take it."""

    name = "dest"

    def __init__(self, db: Database, clock: FixedClock, lease: timedelta) -> None:
        self.db, self.clock, self.lease = db, clock, lease
        self.taken_over: list[store.Delivery] = []

    def deliver(self, event: OutboundEvent, attempt: Attempt) -> Delivered:
        self.clock.advance(self.lease + timedelta(seconds=1))
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline and not self._renewed(attempt.delivery_id):
            time.sleep(0.01)  # waits for a condition (the pool's heartbeat); asserts no timing
        now = self.clock.now()
        with self.db.write() as conn:
            self.taken_over = store.claim_due(conn, now=now, owner="w2", limit=5,
                                              lease_until=now + self.lease)  # fmt: skip
        return Delivered("ok")

    def _renewed(self, delivery_id: str) -> bool:
        d = store.deliveries
        with self.db.read() as conn:
            until = conn.execute(sa.select(d.c.lease_until).where(d.c.id == delivery_id)).scalar()
        return until is not None and until > self.clock.now()


def test_the_pool_renews_the_leases_of_running_attempts(db: Database, clock: FixedClock) -> None:
    _emit(db, clock, ("cus_A", "a1"))
    dispatch_outbox(db, _register(), clock)
    lease = timedelta(seconds=60)
    dest, signal = OutlivesItsLease(db, clock, lease), threading.Event()
    ctx = _context(db, clock, dest, lease=lease, heartbeat=timedelta(milliseconds=10))

    with ThreadPoolExecutor(max_workers=1) as executor:
        pool = DeliveryPool(ctx, executor, size=1, on_done=signal.set)
        _drive(pool, lambda: pool.stats.attempted == 1, signal)

    assert dest.taken_over == []
    assert pool.stats.succeeded == 1


# -- wake-ups -------------------------------------------------------------------------------


def _listen(db: Database) -> psycopg.Connection[tuple[object, ...]]:
    url = db.engine.url.set(drivername="postgresql")
    conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
    conn.execute(f"LISTEN {store.WORK_CHANNEL}")
    return conn


def test_an_outbox_write_notifies_listeners_once_when_it_commits(
    db: Database, clock: FixedClock
) -> None:
    if db.is_sqlite:
        pytest.skip(PG_ONLY)
    listener = _listen(db)
    ctx = EventContext(workspace="w", source="/synchub/w/stripe", traceparent=None,
                       mapping_version=None, app_version="test", now=clock.now())  # fmt: skip
    with db.write() as conn:
        for n in range(3):
            emit_event(conn, ctx, event_type="customer.updated", record={"id": f"cus_{n}"},
                       aggregate_id=f"cus_{n}", changed=[])  # fmt: skip
        assert list(listener.notifies(timeout=0.2)) == []  # nothing before the commit

    first = next(listener.notifies(timeout=PATIENCE, stop_after=1))
    assert (first.channel, first.payload) == (store.WORK_CHANNEL, "")
    assert list(listener.notifies(timeout=0.2)) == []  # three rows, one notice
    listener.close()


def test_dispatch_wakes_other_workers_for_the_deliveries_it_did_not_take(
    db: Database, clock: FixedClock
) -> None:
    if db.is_sqlite:
        pytest.skip(PG_ONLY)
    _emit(db, clock, ("cus_A", "a1"), ("cus_B", "b1"))
    calls: dict[str, queue.Queue[None]] = {"w1": queue.Queue(), "w2": queue.Queue()}
    listeners = [WorkListener(db, lambda n=n: calls[n].put(None), ignore=n) for n in calls]
    for listener in listeners:
        listener.start()
        assert listener.wait_listening(PATIENCE)
    for q in calls.values():
        q.get(timeout=PATIENCE)  # the call every listener makes when it starts listening

    moved = dispatch_outbox(db, _register(), clock, then=lambda _conn: 1, notify_as="w1")

    assert moved == 2
    calls["w2"].get(timeout=PATIENCE)  # woken: one delivery is left for it
    for listener in listeners:
        listener.stop()
    assert calls["w1"].empty()  # its own notice does not wake the sender


REGISTER = """\
workspace: w
timezone: Pacific/Auckland
connections:
  stripe: {system: stripe, mode: sandbox, owner: o@example.invalid, mapping: stripe.v1}
  product: {system: product, mode: sandbox, owner: o@example.invalid}
flows:
  billing-to-product: {source: stripe, destination: product, events: [invoice.paid],
    owner: o@example.invalid}
"""


def test_new_work_wakes_an_idle_worker_without_polling(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    """The worker polls once an hour here: only a wake-up can deliver the second event (a
    NOTIFY from the outbox write on PostgreSQL; `wake()` in-process on SQLite)."""
    (tmp_path / "register").mkdir()
    (tmp_path / "register" / "register.yaml").write_text(REGISTER)
    h = make_harness(db, clock, data_dir=tmp_path, register_dir=tmp_path / "register")
    h.worker.start(idle_sleep=3600)
    try:
        for customer in ("cus_first", "cus_second"):
            _paid(db, clock, customer)
            if db.is_sqlite:
                h.worker.wake()
            _wait_for(lambda c=customer: c in h.boxes.product.accounts)
            _wait_for(lambda: _all_succeeded(db))
    finally:
        h.worker.stop()
        h.http.close()
        for client in h.hub.http_clients:
            client.close()
    assert set(h.boxes.product.accounts) == {"cus_first", "cus_second"}


def _paid(db: Database, clock: FixedClock, customer: str) -> None:
    ctx = EventContext(workspace="w", source="/synchub/w/stripe", traceparent=None,
                       mapping_version=None, app_version="test", now=clock.now())  # fmt: skip
    record = {"id": f"in_{customer}", "customer_id": customer, "status": "paid"}
    extra = {"customer": {"id": customer, "billing_status": "active"}}
    with db.write() as conn:
        emit_event(conn, ctx, event_type="invoice.paid", record=record, aggregate_id=customer,
                   changed=["status"], extra=extra)  # fmt: skip


def _all_succeeded(db: Database) -> bool:
    with db.read() as conn:
        rows = store.list_deliveries(conn)
    return bool(rows) and all(r["status"] == "succeeded" for r in rows)


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, "the worker never got to it"
        time.sleep(0.01)  # waits for a condition; asserts no timing
