"""Many workers on one store: dispatch keeps outbox order, leases outlive slow attempts."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection as DbConnection

from synchub.connectors.base import Attempt, Delivered, OutboundEvent
from synchub.core.clock import FixedClock
from synchub.db import Database
from synchub.events import store
from synchub.events.delivery import DeliveryContext, deliver_due
from synchub.events.dispatch import Dispatcher, dispatch_outbox
from synchub.events.outbox import EventContext, emit_event
from synchub.register.model import Connection, Flow, Mode, Register, RetryPolicy
from tests.dispatching import dispatch_until

POLICY = RetryPolicy(base_seconds=1, cap_seconds=60, max_attempts=3, max_age_seconds=3600)
ONE_WRITER = "SQLite has one writer: transactions commit in sequence order"


def _register() -> Register:
    conn = Connection(name="dest", system="product", mode=Mode.SANDBOX, owner="o",
                      criticality="low", retry=POLICY)  # fmt: skip
    flow = Flow(name="f", source="stripe", destination="dest", owner="o",
                events=("customer.updated",))  # fmt: skip
    return Register(workspace="w", timezone="Pacific/Auckland", connections={"dest": conn},
                    flows=(flow,), ownership=())  # fmt: skip


def _emit(conn: DbConnection, clock: FixedClock, label: str, customer: str = "cus_A") -> None:
    ctx = EventContext(workspace="w", source="/synchub/w/stripe", traceparent=None,
                       mapping_version=None, app_version="test", now=clock.now())  # fmt: skip
    emit_event(conn, ctx, event_type="customer.updated", record={"id": customer, "label": label},
               aggregate_id=customer, changed=[])  # fmt: skip


def _dispatched(db: Database) -> list[str]:
    """Labels of the events fanned out so far, in the order of their deliveries' event seq."""
    with db.read() as conn:
        rows = conn.execute(
            sa.select(store.outbox_events.c.payload)
            .join(store.deliveries, store.deliveries.c.event_id == store.outbox_events.c.id)
            .order_by(store.deliveries.c.event_seq)
        ).scalars()
        return [p["object"]["label"] for p in rows]


def test_an_event_still_in_flight_holds_back_the_ones_after_it(
    db: Database, clock: FixedClock
) -> None:
    if db.is_sqlite:
        pytest.skip(ONE_WRITER)
    state = Dispatcher()
    with db.engine.connect() as slow:
        held = slow.begin()
        _emit(slow, clock, "first")  # takes seq 1 and stays uncommitted
        with db.write() as conn:
            _emit(conn, clock, "second")  # seq 2, committed first
        assert dispatch_outbox(db, _register(), clock, state=state) == 0
        assert _dispatched(db) == []
        held.commit()
    assert dispatch_outbox(db, _register(), clock, state=state) == 2
    assert _dispatched(db) == ["first", "second"]


def test_a_transaction_that_began_earlier_but_numbered_later_waits_too(
    db: Database, clock: FixedClock
) -> None:
    """The oldest-running-transaction rule alone would dispatch 'second' here."""
    if db.is_sqlite:
        pytest.skip(ONE_WRITER)
    state = Dispatcher()
    with db.engine.connect() as early, db.engine.connect() as slow:
        early_tx = early.begin()
        early.execute(sa.text("SELECT pg_current_xact_id()"))  # its id predates the other's
        slow_tx = slow.begin()
        _emit(slow, clock, "first")  # seq 1, stays open
        _emit(early, clock, "second")  # seq 2
        early_tx.commit()
        assert dispatch_outbox(db, _register(), clock, state=state) == 0
        slow_tx.commit()
    assert dispatch_outbox(db, _register(), clock, state=state) == 2
    assert _dispatched(db) == ["first", "second"]


def test_a_second_dispatcher_waits_for_the_first_instead_of_overtaking_it(
    db: Database, clock: FixedClock
) -> None:
    if db.is_sqlite:
        pytest.skip(ONE_WRITER)
    with db.write() as conn:
        for n in range(6):
            _emit(conn, clock, f"e{n}")
    entered, release = threading.Event(), threading.Event()

    class PausingRegister(Register):
        """A test seam: holds the first dispatcher inside its transaction."""

        def destinations_for(self, event_type: str) -> list[str]:
            entered.set()
            release.wait(10)
            return super().destinations_for(event_type)

    pausing = PausingRegister(**vars(_register()))

    def first_dispatcher() -> None:  # passes, as a worker runs them, until one gets going
        state = Dispatcher()
        for _ in range(500):
            if dispatch_outbox(db, pausing, clock, limit=2, state=state) or entered.is_set():
                return
            time.sleep(0.01)

    first = threading.Thread(target=first_dispatcher)
    first.start()
    assert entered.wait(10)
    assert dispatch_outbox(db, _register(), clock) == 0  # the lock holder keeps the order
    assert _dispatched(db) == []
    release.set()
    first.join(10)
    assert _dispatched(db) == ["e0", "e1"]
    assert dispatch_until(db, _register(), clock, 4) == 4
    assert _dispatched(db) == [f"e{n}" for n in range(6)]


class SlowDestination:
    """A call that outlives its lease: meanwhile another worker tries to take the delivery."""

    name = "dest"

    def __init__(self, db: Database, clock: FixedClock, lease: timedelta) -> None:
        self.db, self.clock, self.lease = db, clock, lease
        self.calls = 0
        self.taken_over: list[store.Delivery] = []

    def deliver(self, event: OutboundEvent, attempt: Attempt) -> Delivered:
        self.calls += 1
        self.clock.advance(self.lease + timedelta(seconds=1))
        self._wait_for_renewal(attempt.delivery_id)
        now = self.clock.now()
        with self.db.write() as conn:
            self.taken_over = store.claim_due(conn, now=now, owner="w2", limit=5,
                                              lease_until=now + self.lease)  # fmt: skip
        return Delivered("ok")

    def _wait_for_renewal(self, delivery_id: str) -> None:
        # Polls for a condition (the heartbeat's write), with a generous limit; asserts no timing.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with self.db.read() as conn:
                lease_until = conn.execute(
                    sa.select(store.deliveries.c.lease_until).where(
                        store.deliveries.c.id == delivery_id
                    )
                ).scalar_one()
            if lease_until is not None and lease_until > self.clock.now():
                return
            time.sleep(0.01)


def test_a_slow_attempt_keeps_its_lease_so_no_other_worker_takes_it(
    db: Database, clock: FixedClock
) -> None:
    with db.write() as conn:
        _emit(conn, clock, "a1")
    dispatch_outbox(db, _register(), clock)
    lease = timedelta(seconds=60)
    dest = SlowDestination(db, clock, lease)
    ctx = DeliveryContext(db=db, destinations=lambda _ws: {"dest": dest},
                          policy_for=lambda _name: POLICY, clock=clock, worker_id="w1",
                          lease=lease, heartbeat=timedelta(milliseconds=10))  # fmt: skip
    assert deliver_due(ctx).succeeded == 1
    assert dest.taken_over == []
    with db.read() as conn:
        [row] = store.list_deliveries(conn)
    assert (row["status"], row["attempts"], dest.calls) == ("succeeded", 1, 1)
