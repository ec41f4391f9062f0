"""The delivery queue: order per (entity, destination), leases, retries and dead letters."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from synchub.connectors.base import Attempt, Delivered, OutboundEvent
from synchub.core.clock import FixedClock
from synchub.core.errors import RateLimitedError, RejectedError, TransientError
from synchub.db import Database
from synchub.events import store
from synchub.events.delivery import DeliveryContext, deliver_due
from synchub.events.dispatch import dispatch_outbox
from synchub.events.outbox import EventContext, emit_event
from synchub.register.model import Connection, Flow, Mode, Register, RetryPolicy
from tests.dispatching import dispatch_until

POLICY = RetryPolicy(base_seconds=1, cap_seconds=60, max_attempts=3, max_age_seconds=3600)


class RecordingDestination:
    """A destination that fails as scripted and records what it applied, in order."""

    name = "dest"

    def __init__(self) -> None:
        self.applied: list[str] = []
        self.keys: list[str] = []
        self.script: list[Exception | None] = []

    def deliver(self, event: OutboundEvent, attempt: Attempt) -> Delivered:
        self.keys.append(attempt.idempotency_key)
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        self.applied.append(event.payload["object"]["label"])
        return Delivered("ok")


def _register() -> Register:
    conn = Connection(
        name="dest", system="product", mode=Mode.SANDBOX, owner="o", criticality="low", retry=POLICY
    )
    flow = Flow(
        name="f", source="stripe", destination="dest", owner="o", events=("customer.updated",)
    )
    return Register(
        workspace="w",
        timezone="Pacific/Auckland",
        connections={"dest": conn},
        flows=(flow,),
        ownership=(),
    )


def _emit(db: Database, clock: FixedClock, customer: str, label: str) -> None:
    ctx = EventContext(
        workspace="w",
        source="/synchub/w/stripe",
        traceparent=None,
        mapping_version="stripe.v1",
        app_version="test",
        now=clock.now(),
    )
    with db.write() as conn:
        emit_event(
            conn,
            ctx,
            event_type="customer.updated",
            record={"id": customer, "label": label},
            aggregate_id=customer,
            changed=[],
        )


def _context(db: Database, clock: FixedClock, dest: Any, worker: str = "w1") -> DeliveryContext:
    return DeliveryContext(
        db=db,
        destinations=lambda _workspace: {"dest": dest},
        policy_for=lambda _name: POLICY,
        clock=clock,
        worker_id=worker,
        uniform=lambda lo, hi: hi,
    )


def _statuses(db: Database) -> list[str]:
    with db.read() as conn:
        return [r["status"] for r in store.list_deliveries(conn)]


def test_changes_to_one_customer_arrive_in_order_even_when_one_is_retried(
    db: Database, clock: FixedClock
) -> None:
    dest = RecordingDestination()
    for label in ("a1", "a2", "a3"):
        _emit(db, clock, "cus_A", label)
    _emit(db, clock, "cus_B", "b1")
    dispatch_outbox(db, _register(), clock)
    dest.script = [TransientError("502")]  # a1 fails once
    ctx = _context(db, clock, dest)
    for _ in range(10):
        deliver_due(ctx)
        clock.advance(timedelta(seconds=5))
    assert [x for x in dest.applied if x.startswith("a")] == ["a1", "a2", "a3"]
    assert "b1" in dest.applied[:1]  # the other customer was not held up
    assert set(_statuses(db)) == {"succeeded"}


def test_a_retry_keeps_its_idempotency_key_and_honours_retry_after(
    db: Database, clock: FixedClock
) -> None:
    dest = RecordingDestination()
    _emit(db, clock, "cus_A", "a1")
    dispatch_outbox(db, _register(), clock)
    dest.script = [RateLimitedError("429", retry_after=30)]
    ctx = _context(db, clock, dest)
    deliver_due(ctx)
    clock.advance(timedelta(seconds=29))
    assert deliver_due(ctx).attempted == 0  # Retry-After not yet over
    clock.advance(timedelta(seconds=2))
    assert deliver_due(ctx).succeeded == 1
    assert len(set(dest.keys)) == 1


def test_a_permanent_failure_is_a_dead_letter_at_once(db: Database, clock: FixedClock) -> None:
    dest = RecordingDestination()
    _emit(db, clock, "cus_A", "a1")
    dispatch_outbox(db, _register(), clock)
    dest.script = [RejectedError("xero answered 400: name taken", status=400)]
    assert deliver_due(_context(db, clock, dest)).dead == 1
    with db.read() as conn:
        [row] = store.list_deliveries(conn, status="dead")
        [attempt] = store.attempts_of(conn, row["id"])
    assert row["dead_reason"] == "xero answered 400: name taken"
    assert attempt["outcome"] == "dead"


def test_exhausted_retries_become_a_dead_letter_with_the_history(
    db: Database, clock: FixedClock
) -> None:
    dest = RecordingDestination()
    _emit(db, clock, "cus_A", "a1")
    dispatch_outbox(db, _register(), clock)
    dest.script = [TransientError("503")] * 3
    ctx = _context(db, clock, dest)
    for _ in range(5):
        deliver_due(ctx)
        clock.advance(timedelta(minutes=2))
    with db.read() as conn:
        [row] = store.list_deliveries(conn, status="dead")
        attempts = store.attempts_of(conn, row["id"])
    assert [a["outcome"] for a in attempts] == ["retry", "retry", "dead"]
    assert row["dead_reason"].startswith("gave up after 3 attempts")


def test_a_lease_held_by_a_dead_worker_expires_and_the_work_is_retaken(
    db: Database, clock: FixedClock
) -> None:
    _emit(db, clock, "cus_A", "a1")
    dispatch_outbox(db, _register(), clock)
    with db.write() as conn:  # worker 1 takes the lease and dies before finishing
        [taken] = store.claim_due(
            conn,
            now=clock.now(),
            owner="dead-worker",
            lease_until=clock.now() + timedelta(seconds=60),
            limit=10,
        )
    dest = RecordingDestination()
    ctx = _context(db, clock, dest, worker="w2")
    assert deliver_due(ctx).attempted == 0  # still leased
    clock.advance(timedelta(seconds=61))
    assert deliver_due(ctx).succeeded == 1
    assert dest.keys == [taken.idempotency_key]
    with db.write() as conn:  # the dead worker's late answer is refused
        assert not store.finish(conn, taken.id, owner="dead-worker", status="succeeded")


def test_two_workers_never_hold_the_same_delivery(db: Database, clock: FixedClock) -> None:
    for i in range(20):
        _emit(db, clock, f"cus_{i}", f"x{i}")
    dispatch_outbox(db, _register(), clock)
    lease = clock.now() + timedelta(seconds=60)
    with db.write() as conn:
        first = store.claim_due(conn, now=clock.now(), owner="w1", lease_until=lease, limit=12)
    with db.write() as conn:
        second = store.claim_due(conn, now=clock.now(), owner="w2", lease_until=lease, limit=12)
    assert len(first) == 12
    assert len(second) == 8
    assert not {d.id for d in first} & {d.id for d in second}


def test_dispatch_is_idempotent(db: Database, clock: FixedClock) -> None:
    _emit(db, clock, "cus_A", "a1")
    assert dispatch_until(db, _register(), clock, 1) == 1
    assert dispatch_outbox(db, _register(), clock) == 0
    with db.read() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(store.deliveries)).scalar()
    assert count == 1


@pytest.mark.parametrize("outcome", [TransientError("timeout"), None])
def test_attempts_are_recorded(db: Database, clock: FixedClock, outcome: Exception | None) -> None:
    dest = RecordingDestination()
    dest.script = [outcome]
    _emit(db, clock, "cus_A", "a1")
    dispatch_outbox(db, _register(), clock)
    deliver_due(_context(db, clock, dest))
    with db.read() as conn:
        [row] = store.list_deliveries(conn)
        attempts = store.attempts_of(conn, row["id"])
    assert len(attempts) == 1
