"""Group commit of delivery outcomes (ADR 0014, `outcome.record_group`): several slots'
outcomes in one transaction, each in a savepoint of its own, then one claim for the slots
written. A lost lease, a link conflict or a failed write rolls back only its own outcome."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from synchub.connectors.base import Attempt, Delivered, Link, OutboundEvent
from synchub.core.clock import FixedClock
from synchub.db import Database
from synchub.events import store
from synchub.events.delivery import Claimed, DeliveryContext, attempt, claim_some, claim_work
from synchub.events.dispatch import dispatch_outbox
from synchub.events.outcome import record_group
from synchub.mdm import store as mdm_store
from tests.integration.test_delivery_pool import _context, _emit, _register


class LinkingDestination:
    """Applies every event and links its customer under `ext_<customer>`, plus any extra
    external ids scripted for that customer."""

    name = "dest"

    def __init__(self, extra: dict[str, list[str]] | None = None) -> None:
        self.extra = extra or {}

    def deliver(self, event: OutboundEvent, attempt: Attempt) -> Delivered:
        customer = event.subject
        ids = [f"ext_{customer}", *self.extra.get(customer, [])]
        return Delivered("ok", links=[Link("customer", customer, x) for x in ids])


def _first_wave(
    db: Database, clock: FixedClock, dest: object, customers: list[str]
) -> tuple[DeliveryContext, list[Claimed]]:
    """Two changes per customer (every first one before any second); w1 claims and attempts
    the first of each (the order rule keeps the seconds back)."""
    _emit(db, clock, *[(c, f"{c}-{k}") for k in (1, 2) for c in customers])
    dispatch_outbox(db, _register(), clock)
    ctx = _context(db, clock, dest)
    with db.write() as conn:
        claimed = claim_work(ctx, conn, limit=2 * len(customers))
    assert sorted(c.delivery.aggregate_id for c in claimed) == sorted(customers)
    return ctx, sorted(claimed, key=lambda c: c.delivery.aggregate_id)


def _row(db: Database, delivery_id: str) -> dict[str, Any]:
    d = store.deliveries
    with db.read() as conn:
        row = conn.execute(sa.select(d).where(d.c.id == delivery_id)).mappings().one()
        return {**row, "attempt_rows": len(store.attempts_of(conn, delivery_id))}


def _links(db: Database) -> dict[str, str]:
    """external id -> canonical id, for the destination's customer links."""
    x = mdm_store.crosswalk
    with db.read() as conn:
        rows = conn.execute(
            sa.select(x.c.external_id, x.c.canonical_id).where(x.c.system == "dest")
        )
        return {str(e): str(c) for e, c in rows}


def _label(claimed: Claimed) -> str:
    assert claimed.event is not None
    return str(claimed.event.payload["object"]["label"])


def _fail_after_writing(monkeypatch: pytest.MonkeyPatch, delivery_id: str, how: str) -> list[str]:
    """Make the outcome write of `delivery_id` fail after its outcome and attempt rows were
    written in the transaction (a Python error, or a statement the database refuses)."""
    real = store.finish_attempt
    failed: list[str] = []

    def finish_attempt(conn: Any, target: str, **kwargs: Any) -> bool:
        written = real(conn, target, **kwargs)
        if target == delivery_id:
            assert written  # the rows are there; only a rollback to the savepoint undoes them
            failed.append(target)
            if how == "sql":
                conn.exec_driver_sql("INSERT INTO no_such_table_for_this_test VALUES (1)")
            raise RuntimeError("the outcome write failed")
        return written

    monkeypatch.setattr(store, "finish_attempt", finish_attempt)
    return failed


def test_a_stolen_lease_rolls_back_only_its_own_outcome_and_the_claim_serves_the_others(
    db: Database, clock: FixedClock
) -> None:
    ctx, claimed = _first_wave(db, clock, LinkingDestination(), ["cus_A", "cus_B", "cus_C"])
    finished = [attempt(ctx, c) for c in claimed]
    a1, b1, c1 = (c.delivery.id for c in claimed)
    # w1's heartbeat missed cus_B's lease; it ran out and worker w2 took that delivery.
    clock.advance(ctx.lease + timedelta(seconds=1))
    with db.write() as conn:
        assert (
            store.renew_leases(conn, [a1, c1], owner="w1", lease_until=clock.now() + ctx.lease) == 2
        )
        stolen = store.claim_due(conn, now=clock.now(), owner="w2", limit=10,
                                 lease_until=clock.now() + ctx.lease)  # fmt: skip
    assert [d.id for d in stolen] == [b1]

    out = record_group(ctx, finished, claim=claim_some(ctx), wants=[True, True, True])

    (a_name, a_next), (b_name, b_next), (c_name, c_next) = out  # type: ignore[misc]
    assert (a_name, b_name, c_name) == ("succeeded", "lease_lost", "succeeded")
    assert b_next is None  # a slot whose outcome was not written claims nothing
    for delivery_id in (a1, c1):
        row = _row(db, delivery_id)
        assert (row["status"], row["lease_owner"], row["attempt_rows"]) == ("succeeded", None, 1)
    row = _row(db, b1)  # as w2 left it: its lease, no outcome, no attempt, no link
    assert (row["status"], row["lease_owner"], row["attempt_rows"]) == ("in_flight", "w2", 0)
    assert _links(db) == {"ext_cus_A": "cus_A", "ext_cus_C": "cus_C"}
    # One claim in the group's transaction: it sees the outcomes written there and takes each
    # written customer's next change; cus_B's waits for w2's attempt.
    nexts = [n for n in (a_next, c_next) if n is not None]
    assert sorted(_label(n) for n in nexts) == ["cus_A-2", "cus_C-2"]
    with db.read() as conn:
        pending = store.list_deliveries(conn, status="pending")
    assert [r["aggregate_id"] for r in pending] == ["cus_B"]
    for n in nexts:
        assert _row(db, n.delivery.id)["lease_owner"] == "w1"


@pytest.mark.parametrize("how", ["python", "sql"])
def test_an_outcome_whose_write_fails_rolls_back_only_its_own_rows(
    db: Database, clock: FixedClock, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    ctx, claimed = _first_wave(db, clock, LinkingDestination(), ["cus_A", "cus_B", "cus_C"])
    finished = [attempt(ctx, c) for c in claimed]
    a1, b1, c1 = (c.delivery.id for c in claimed)
    failed = _fail_after_writing(monkeypatch, b1, how)

    out = record_group(ctx, finished, claim=None, wants=[False, False, False])

    assert failed == [b1]
    assert isinstance(out[1], Exception)  # handed to its slot, which raises it
    assert [o[0] for o in (out[0], out[2]) if isinstance(o, tuple)] == ["succeeded", "succeeded"]
    for delivery_id in (a1, c1):
        row = _row(db, delivery_id)
        assert (row["status"], row["attempt_rows"]) == ("succeeded", 1)
    row = _row(db, b1)  # still w1's: its lease runs out and it is retaken
    assert (row["status"], row["lease_owner"], row["attempt_rows"]) == ("in_flight", "w1", 0)
    assert row["completed_at"] is None
    assert _links(db) == {"ext_cus_A": "cus_A", "ext_cus_C": "cus_C"}


def test_a_link_conflict_dead_letters_its_delivery_without_the_links_it_wrote(
    db: Database, clock: FixedClock
) -> None:
    # The destination answers for cus_B with its own id and with one already cus_X's (it
    # merged two of our records): the first link was written before the second conflicted.
    dest = LinkingDestination(extra={"cus_B": ["ext_taken"]})
    with db.write() as conn:
        mdm_store.link(conn, workspace="w", entity="customer", system="dest",
                       external_id="ext_taken", canonical_id="cus_X", reason="test",
                       at=clock.now())  # fmt: skip
    ctx, claimed = _first_wave(db, clock, dest, ["cus_A", "cus_B", "cus_C"])
    finished = [attempt(ctx, c) for c in claimed]
    a1, b1, c1 = (c.delivery.id for c in claimed)

    out = record_group(ctx, finished, claim=None, wants=[False, False, False])

    assert [o[0] if isinstance(o, tuple) else o for o in out] == ["succeeded", "dead", "succeeded"]
    for delivery_id in (a1, c1):
        assert _row(db, delivery_id)["status"] == "succeeded"
    row = _row(db, b1)
    assert (row["status"], row["attempt_rows"]) == ("dead", 1)
    assert "belongs to another customer" in row["dead_reason"]
    assert _links(db) == {"ext_cus_A": "cus_A", "ext_cus_C": "cus_C", "ext_taken": "cus_X"}


def test_a_later_change_is_not_claimed_while_an_earlier_ones_outcome_is_uncommitted(
    db: Database, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cus_A-1's outcome rows were written in the group's transaction, then its write failed:
    rolled back to its savepoint, it is not committed, so the group's own claim must not take
    cus_A-2 (which comes first in the queue) but cus_B-2. On PostgreSQL another worker claiming
    while the group's transaction is open sees neither outcome and takes nothing."""
    ctx, claimed = _first_wave(db, clock, LinkingDestination(), ["cus_A", "cus_B"])
    finished = [attempt(ctx, c) for c in claimed]
    a1, b1 = (c.delivery.id for c in claimed)
    _fail_after_writing(monkeypatch, a1, "python")
    others: list[list[store.Delivery]] = []
    group_claim = claim_some(ctx)

    def claim(conn: Any, health: Any, limit: int) -> list[Claimed]:
        if not db.is_sqlite:  # SQLite: a second writer waits for commit
            with db.write() as other:
                others.append(store.claim_due(other, now=clock.now(), owner="w2", limit=10,
                                              lease_until=clock.now() + ctx.lease))  # fmt: skip
        return group_claim(conn, health, limit)

    out = record_group(ctx, finished, claim=claim, wants=[True, True])

    assert isinstance(out[0], RuntimeError)
    b_name, b_next = out[1]  # type: ignore[misc]
    assert b_name == "succeeded"
    assert b_next is not None
    assert _label(b_next) == "cus_B-2"
    assert others == ([] if db.is_sqlite else [[]])  # w2 took nothing
    row = _row(db, a1)
    assert (row["status"], row["lease_owner"], row["attempt_rows"]) == ("in_flight", "w1", 0)
    with db.read() as conn:
        pending = store.list_deliveries(conn, status="pending")
    assert [(r["aggregate_id"], r["lease_owner"]) for r in pending] == [("cus_A", None)]
    assert _row(db, b1)["status"] == "succeeded"
