"""The stale-write guard (ADR 0021): a replayed older delivery never rolls a destination back
to an older snapshot; side effects that are not snapshots still happen; a replay keeps the
delivery's `created_at` and waits for a later delivery of its entity that is in flight."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from synchub.connectors.base import Attempt, OutboundEvent
from synchub.connectors.fault import Fault
from synchub.core.clock import FixedClock
from synchub.db import Database
from synchub.events import store
from synchub.events.service import DeliveryFilter, replay
from tests.harness import Harness, make_harness

EMAIL = "aroha@kowhai.nz"
NOW = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)


@pytest.fixture
def harness(db: Database, clock: FixedClock, tmp_path: Path) -> Iterator[Harness]:
    made = make_harness(db, clock, data_dir=tmp_path)
    yield made
    made.worker.stop()
    made.http.close()
    for client in made.hub.http_clients:
        client.close()


def _deliveries(h: Harness) -> dict[tuple[str, str], dict[str, Any]]:
    """(event type, destination) -> the delivery row (one customer per test)."""
    with h.hub.db.read() as conn:
        return {(d["event_type"], d["destination"]): d for d in store.list_deliveries(conn)}


def _replay(h: Harness, *ids: str) -> None:
    with h.hub.db.write() as conn:
        done = replay(conn, workspace=h.hub.register.workspace, where=DeliveryFilter(),
                      now=h.clock.now(), delivery_ids=list(ids))  # fmt: skip
    assert sorted(done.replayed) == sorted(ids)


def _outcomes(h: Harness, delivery_id: str) -> list[str]:
    with h.hub.db.read() as conn:
        return [a["outcome"] for a in store.attempts_of(conn, delivery_id)]


def _old_then_new(h: Harness) -> str:
    """Aroha Old, then Aroha New, both delivered; the Stripe customer's id."""
    customer = h.boxes.stripe.create_customer(email=EMAIL, name="Aroha Old", currency="nzd")
    h.deliver_stripe()
    h.boxes.stripe.update_customer(customer["id"], name="Aroha New")
    h.deliver_stripe()
    return str(customer["id"])


def _names(h: Harness) -> tuple[list[str], list[str]]:
    hubspot = [f"{c['firstname']} {c['lastname']}" for c in h.boxes.hubspot.contacts()]
    xero = [str(c["Name"]) for c in h.boxes.xero.contacts.values()]
    return hubspot, xero


def test_replaying_an_old_succeeded_delivery_never_rolls_the_destination_back(
    harness: Harness,
) -> None:
    _old_then_new(harness)
    assert _names(harness) == (["Aroha New"], ["Aroha New"])
    rows = _deliveries(harness)
    created = [rows[("customer.created", d)]["id"] for d in ("hubspot", "xero")]
    newer = rows[("customer.updated", "hubspot")]
    hubspot_calls = len(harness.boxes.hubspot.requests)

    _replay(harness, *created)
    harness.settle()

    assert _names(harness) == (["Aroha New"], ["Aroha New"])
    assert len(harness.boxes.hubspot.requests) == hubspot_calls  # nothing was sent
    after = _deliveries(harness)
    for delivery_id, destination in zip(created, ("hubspot", "xero"), strict=True):
        assert after[("customer.created", destination)]["status"] == "succeeded"
        assert _outcomes(harness, delivery_id) == ["succeeded", "replayed", "superseded"]
    with harness.hub.db.read() as conn:
        applied = conn.execute(sa.select(store.applied_versions)).mappings().all()
    assert {(a["destination"], a["applied_seq"]) for a in applied} >= {
        ("hubspot", newer["event_seq"]),
        ("xero", rows[("customer.updated", "xero")]["event_seq"]),
    }

    # The newest delivery replayed is sent again (same key, same upsert): harmless, not stale.
    _replay(harness, newer["id"])
    harness.settle()
    assert _outcomes(harness, newer["id"]) == ["succeeded", "replayed", "succeeded"]
    assert len(harness.boxes.hubspot.requests) > hubspot_calls
    assert _names(harness)[0] == ["Aroha New"]


def test_an_old_dead_letter_replayed_after_newer_changes_went_through_is_superseded(
    harness: Harness,
) -> None:
    harness.boxes.hubspot.faults.add(Fault(status=400, method="POST", path="/contacts/"))
    _old_then_new(harness)
    rows = _deliveries(harness)
    dead = rows[("customer.created", "hubspot")]
    assert dead["status"] == "dead"
    assert _names(harness)[0] == ["Aroha New"]

    _replay(harness, dead["id"])
    harness.settle()

    assert _names(harness)[0] == ["Aroha New"]
    assert _deliveries(harness)[("customer.created", "hubspot")]["status"] == "succeeded"
    assert _outcomes(harness, dead["id"])[-2:] == ["replayed", "superseded"]


def test_a_replay_keeps_created_at_and_gets_a_fresh_retry_budget(harness: Harness) -> None:
    harness.boxes.hubspot.faults.add(Fault(status=400, method="POST", path="/contacts/"))
    harness.boxes.stripe.create_customer(email=EMAIL, name="Aroha", currency="nzd")
    harness.deliver_stripe()
    dead = _deliveries(harness)[("customer.created", "hubspot")]
    assert dead["status"] == "dead"
    harness.clock.advance(timedelta(days=3))  # far past hubspot's maximum age of a day
    harness.boxes.hubspot.faults.add(Fault(status=503, method="POST", path="/contacts/"))

    _replay(harness, dead["id"])
    replayed_at = harness.clock.now()
    harness.worker.run_pass()

    row = _deliveries(harness)[("customer.created", "hubspot")]
    assert row["created_at"] == dead["created_at"]  # since/until still select by it
    assert row["replayed_at"] == replayed_at
    assert row["status"] == "pending"  # retried: its budget counts from the replay
    harness.settle()
    assert _deliveries(harness)[("customer.created", "hubspot")]["status"] == "succeeded"
    assert _names(harness)[1] == ["Aroha"]


def test_a_replay_waits_while_a_later_delivery_of_its_customer_is_in_flight(
    harness: Harness,
) -> None:
    _old_then_new(harness)
    rows = _deliveries(harness)
    older, newer = rows[("customer.created", "hubspot")], rows[("customer.updated", "hubspot")]
    now = harness.clock.now()
    t = store.deliveries
    with harness.hub.db.write() as conn:  # another worker is sending the newer one right now
        lease = {"lease_owner": "other", "lease_until": now + timedelta(minutes=5)}
        conn.execute(sa.update(t).where(t.c.id == newer["id"]).values(status="in_flight", **lease))
    _replay(harness, older["id"])

    def claim(at: Any) -> list[str]:
        with harness.hub.db.write() as conn:
            until = at + timedelta(minutes=5)
            claimed = store.claim_due(conn, now=at, owner="me", lease_until=until, limit=10)
        return [d.id for d in claimed if d.destination == "hubspot"]

    assert claim(now) == []
    assert claim(now + timedelta(minutes=6)) == [older["id"]]  # that worker died: no deadlock


def test_the_applied_version_never_goes_down(db: Database, clock: FixedClock) -> None:
    key = {"workspace": "w", "destination": "hubspot", "canonical_ids": ["cus_1"]}
    with db.write() as conn:
        store.record_applied(conn, seq=7, event_id="evt_7", at=clock.now(), **key)
        store.record_applied(conn, seq=3, event_id="evt_3", at=clock.now(), **key)
        assert store.applied_seqs(conn, workspace="w", destination="hubspot",
                                  canonical_ids=["cus_1", "cus_2"]) == {"cus_1": 7}  # fmt: skip
        store.record_applied(conn, seq=9, event_id="evt_9", at=clock.now(), **key)
        assert store.applied_seqs(conn, workspace="w", destination="hubspot",
                                  canonical_ids=["cus_1"]) == {"cus_1": 9}  # fmt: skip


def _event(event_type: str, payload: dict[str, Any], *, seq: int, applied: int) -> OutboundEvent:
    return OutboundEvent(id=f"evt_{seq}", type=event_type, subject=payload["object"]["id"],
                         time=NOW, payload=payload, traceparent=None, links={},
                         seq=seq, applied={"cus_1": applied})  # fmt: skip


def test_an_old_invoice_payment_is_still_made_but_never_rewrites_the_contact(
    harness: Harness,
) -> None:
    xero = harness.hub.destinations_for(harness.hub.register.workspace)["xero"]
    customer = {"id": "cus_1", "email": EMAIL, "name": "Aroha New", "company_name": None}
    xero.deliver(_event("customer.updated", {"object": customer}, seq=10, applied=0),
                 Attempt("dlv_a", "key-a", 1))  # fmt: skip
    invoice = {"id": "inv_1", "customer_id": "cus_1", "status": "paid", "currency": "NZD",
               "total_minor": 11500, "subtotal_minor": 10000, "tax_minor": 1500,
               "number": "INV-1", "paid_at": "2026-12-02T00:00:00Z"}  # fmt: skip
    old_customer = {**customer, "name": "Aroha Old"}
    paid = _event("invoice.paid", {"object": invoice, "customer": old_customer, "lines": []},
                  seq=5, applied=10)  # fmt: skip

    result = xero.deliver(paid, Attempt("dlv_b", "key-b", 1))

    assert [c["Name"] for c in harness.boxes.xero.contacts.values()] == ["Aroha New"]
    assert not result.superseded  # the payment is not a snapshot: it was made
    assert result.applied == []  # and the contact was left as it is
    [payment] = harness.boxes.xero.payments.values()
    assert Decimal(str(payment["Amount"])) == Decimal("115.00")


def test_an_old_entitlement_callback_is_not_sent_after_a_newer_one(harness: Harness) -> None:
    product = harness.hub.destinations_for(harness.hub.register.workspace)["product"]
    summary = {"id": "cus_1", "billing_status": "active", "entitled": True}
    payload = {"object": {"id": "inv_1", "customer_id": "cus_1", "status": "paid"},
               "customer": summary}  # fmt: skip

    stale = product.deliver(_event("invoice.paid", payload, seq=5, applied=10),
                            Attempt("dlv_c", "key-c", 1))  # fmt: skip
    assert stale.superseded
    assert harness.boxes.product.accounts == {}  # the account was not unlocked from old news

    fresh = product.deliver(_event("invoice.paid", payload, seq=11, applied=10),
                            Attempt("dlv_d", "key-d", 1))  # fmt: skip
    assert (fresh.superseded, fresh.applied) == (False, ["cus_1"])
    assert harness.boxes.product.accounts["cus_1"]["entitled"] is True
