"""Delivery backbone fixes below the API: metrics counted after commit, a success's own
status code, and a replay by id of a pending or in-flight delivery."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from synchub.connectors.base import Attempt, Delivered, OutboundEvent
from synchub.core.clock import FixedClock
from synchub.core.errors import ConflictError, NotFoundError, TransientError
from synchub.db import Database
from synchub.events import store
from synchub.events.delivery import deliver_due
from synchub.events.dispatch import Dispatcher, dispatch_outbox
from synchub.events.service import DeliveryFilter, replay
from synchub.observability.metrics import process_metrics
from tests.integration.test_delivery_queue import _context, _emit, _register

ATTEMPTS = "synchub_delivery_attempts_total"
DURATIONS = "synchub_delivery_attempt_duration_seconds_count"
EVENTS = "synchub_events_written_total"


class ScriptedDestination:
    """Fails or answers as scripted: an exception, or the status code of a success."""

    name = "dest"

    def __init__(self, *script: Exception | int | None) -> None:
        self.script = list(script)
        self.keys: list[str] = []

    def deliver(self, event: OutboundEvent, attempt: Attempt) -> Delivered:
        self.keys.append(attempt.idempotency_key)
        step = self.script.pop(0) if self.script else None
        if isinstance(step, Exception):
            raise step
        return Delivered("ok", status_code=step)


def dispatch(db: Database, clock: FixedClock, expected: int) -> None:
    """Fan out `expected` outbox events, as a worker's dispatcher would over passes (on
    PostgreSQL a pass waits while any older transaction of the database, autovacuum's
    included, may still commit an outbox row)."""
    state, moved = Dispatcher(), 0
    for _ in range(200):
        moved += dispatch_outbox(db, _register(), clock, state=state)
        if moved >= expected:
            break
        time.sleep(0.01)
    assert moved == expected


def sample(name: str, **labels: str) -> float:
    """One sample of this process's registry (0 when it was never recorded)."""
    return process_metrics().registry.get_sample_value(name, labels) or 0.0


def only_delivery(db: Database) -> dict[str, object]:
    with db.read() as conn:
        [row] = store.list_deliveries(conn)
    return row


def test_dispatch_counts_committed_events_and_nothing_for_a_rollback(
    db: Database, clock: FixedClock
) -> None:
    before = sample(EVENTS, event_type="customer.updated")
    _emit(db, clock, "cus_A", "a1")
    _emit(db, clock, "cus_B", "b1")

    def fail(_conn: Connection) -> int:
        raise RuntimeError("the dispatch transaction fails after fan-out")

    state = Dispatcher()
    for _ in range(200):  # until a pass gets as far as fanning out (see `dispatch`)
        try:
            dispatch_outbox(db, _register(), clock, then=fail, state=state)
        except RuntimeError:
            break
        time.sleep(0.01)
    else:
        pytest.fail("the dispatch never got to fan out")
    assert sample(EVENTS, event_type="customer.updated") == before  # rolled back: nothing
    dispatch(db, clock, 2)
    assert sample(EVENTS, event_type="customer.updated") == before + 2
    assert dispatch_outbox(db, _register(), clock) == 0
    assert sample(EVENTS, event_type="customer.updated") == before + 2  # each once


def test_every_attempt_outcome_is_counted_with_its_duration(
    db: Database, clock: FixedClock
) -> None:
    counted = {o: sample(ATTEMPTS, destination="dest", outcome=o) for o in ("retry", "succeeded")}
    durations = sample(DURATIONS, destination="dest")
    _emit(db, clock, "cus_A", "a1")
    dispatch(db, clock, 1)
    ctx = _context(db, clock, ScriptedDestination(TransientError("503", status=503), 200))
    deliver_due(ctx)
    clock.advance(timedelta(minutes=5))
    deliver_due(ctx)
    assert sample(ATTEMPTS, destination="dest", outcome="retry") == counted["retry"] + 1
    assert sample(ATTEMPTS, destination="dest", outcome="succeeded") == counted["succeeded"] + 1
    assert sample(DURATIONS, destination="dest") == durations + 2


def test_a_dead_letter_is_counted_as_dead(db: Database, clock: FixedClock) -> None:
    before = sample(ATTEMPTS, destination="dest", outcome="dead")
    _emit(db, clock, "cus_A", "a1")
    dispatch(db, clock, 1)
    dest = ScriptedDestination(*[TransientError("503", status=503)] * 3)
    ctx = _context(db, clock, dest)
    for _ in range(4):
        deliver_due(ctx)
        clock.advance(timedelta(minutes=5))
    assert only_delivery(db)["status"] == "dead"
    assert sample(ATTEMPTS, destination="dest", outcome="dead") == before + 1


@pytest.mark.parametrize("status", [201, None])
def test_a_success_records_its_own_status_not_an_earlier_failures(
    db: Database, clock: FixedClock, status: int | None
) -> None:
    _emit(db, clock, "cus_A", "a1")
    dispatch(db, clock, 1)
    ctx = _context(db, clock, ScriptedDestination(TransientError("503", status=503), status))
    deliver_due(ctx)
    assert only_delivery(db)["last_status_code"] == 503
    clock.advance(timedelta(minutes=5))
    assert deliver_due(ctx).succeeded == 1
    row = only_delivery(db)
    with db.read() as conn:
        attempts = store.attempts_of(conn, str(row["id"]))
    assert (row["status"], row["last_status_code"], row["last_error"]) == (
        "succeeded",
        status,
        None,
    )
    assert row["last_response"] is None
    assert [(a["outcome"], a["status_code"]) for a in attempts] == [
        ("retry", 503),
        ("succeeded", status),
    ]


def test_replaying_a_pending_delivery_makes_it_due_now_with_its_key_and_history(
    db: Database, clock: FixedClock
) -> None:
    _emit(db, clock, "cus_A", "a1")
    dispatch(db, clock, 1)
    dest = ScriptedDestination(TransientError("503", status=503), 200)
    ctx = _context(db, clock, dest)
    deliver_due(ctx)
    waiting = only_delivery(db)
    assert waiting["status"] == "pending"
    assert waiting["next_attempt_at"] > clock.now()  # type: ignore[operator]
    clock.advance(timedelta(milliseconds=10))
    with db.write() as conn:
        done = replay(conn, workspace="w", where=DeliveryFilter(status="dead"), now=clock.now(),
                      delivery_ids=[str(waiting["id"])])  # fmt: skip
    assert (done.replayed, done.due_now) == ([], [waiting["id"]])
    row = only_delivery(db)
    assert (row["status"], row["next_attempt_at"]) == ("pending", clock.now())
    assert (row["attempts"], row["idempotency_key"]) == (1, waiting["idempotency_key"])
    assert deliver_due(ctx).succeeded == 1  # at once, not at the retry's time
    with db.read() as conn:
        outcomes = [a["outcome"] for a in store.attempts_of(conn, str(row["id"]))]
    assert outcomes == ["retry", "succeeded"]
    assert dest.keys == [waiting["idempotency_key"]] * 2


def test_replaying_a_delivery_in_flight_is_refused_and_changes_nothing(
    db: Database, clock: FixedClock
) -> None:
    _emit(db, clock, "cus_A", "a1")
    _emit(db, clock, "cus_B", "b1")
    dispatch(db, clock, 2)
    with db.write() as conn:
        lease = clock.now() + timedelta(minutes=5)
        [busy] = store.claim_due(conn, now=clock.now(), owner="w9", lease_until=lease, limit=1)
        other = conn.execute(
            sa.select(store.deliveries.c.id).where(store.deliveries.c.id != busy.id)
        ).scalar_one()
    with pytest.raises(ConflictError, match=f"delivery {busy.id} is in flight"), db.write() as conn:
        replay(conn, workspace="w", where=DeliveryFilter(), now=clock.now() + timedelta(hours=1),
               delivery_ids=[other, busy.id])  # fmt: skip
    with db.read() as conn:
        rows = {r["id"]: r for r in store.list_deliveries(conn)}
    assert rows[busy.id]["status"] == "in_flight"
    assert rows[other]["next_attempt_at"] == clock.now()  # untouched: the whole replay refused
    with pytest.raises(NotFoundError, match="no delivery dlv_nope"), db.write() as conn:
        replay(conn, workspace="w", where=DeliveryFilter(), now=clock.now(),
               delivery_ids=["dlv_nope"])  # fmt: skip
