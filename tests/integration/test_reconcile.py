"""Reconciliation on SQLite: sandboxes drift, reconcile finds it, --repair puts every system
right through the outbox, and a second reconcile finds nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from synchub.audit.service import entries
from synchub.core.clock import FixedClock
from synchub.db import Database
from synchub.mdm import store
from synchub.reconciliation import reconcile, repair
from tests.harness import Harness, make_harness


@pytest.fixture
def harness(sqlite_db: Database, clock: FixedClock, tmp_path: Path) -> Harness:
    return make_harness(sqlite_db, clock, data_dir=tmp_path)


def _day(h: Harness) -> dict[str, Any]:
    """Two paying customers, delivered everywhere."""
    stripe = h.boxes.stripe
    price = stripe.create_price(nickname="Starter", unit_amount=4900, currency="nzd")
    company = {"company": "Kōwhai Café Ltd"}
    aroha = stripe.create_customer(email="aroha@kowhai-cafe.co.nz", name="Aroha Ngāta",
                                   currency="nzd", metadata=company)  # fmt: skip
    aroha_sub = stripe.create_subscription(aroha["id"], price["id"])
    mere = stripe.create_customer(email="mere@tuhoe-design.co.nz", name="Mere Tūhoe",
                                  currency="nzd", metadata={"company": "Tūhoe Design"})  # fmt: skip
    stripe.create_subscription(mere["id"], price["id"])
    h.deliver_stripe()
    return {"aroha": aroha, "aroha_sub": aroha_sub, "mere": mere}


def _canonical(h: Harness, system: str, entity: str, external_id: str) -> str:
    with h.hub.db.read() as conn:
        found = store.find_canonical_id(conn, workspace="live", entity=entity, system=system,
                                        external_id=external_id)  # fmt: skip
    assert found is not None
    return found


def _links(h: Harness, canonical_id: str) -> dict[str, str]:
    with h.hub.db.read() as conn:
        return store.external_ids(conn, workspace="live", canonical_id=canonical_id)


def test_a_settled_day_has_no_drift(harness: Harness) -> None:
    _day(harness)
    report = reconcile(harness.hub)
    assert report.as_dict()["drift"] == 0, report.as_dict()["customers"]
    assert report.comparison.records >= 8  # 2 customers x 4 systems, 2 subscriptions
    assert report.unreachable == []


def test_repair_pushes_and_observes_until_no_drift_is_left(harness: Harness) -> None:
    h = harness
    day = _day(h)
    aroha = _canonical(h, "stripe", "customer", day["aroha"]["id"])
    mere = _canonical(h, "stripe", "customer", day["mere"]["id"])
    # Monday morning: someone edits HubSpot by hand, the product locks a paying account,
    # and Stripe changes an owned field whose webhook never arrives.
    contact = h.boxes.hubspot.objects["contacts"][_links(h, aroha)["hubspot"]]
    contact["properties"]["synchub_billing_status"] = "canceled"
    contact["properties"]["firstname"] = "A."
    h.boxes.product.accounts[mere]["entitled"] = False
    h.boxes.stripe.update_customer(day["mere"]["id"], email="mere@tuhoe.design")
    h.boxes.stripe.hold()  # the customer.updated webhook is lost

    found = reconcile(h.hub, record_conflicts=True, actor="cli_test")
    data = found.as_dict()
    drift = {(d["system"], d["field"]): d for c in data["customers"]
             for items in c["systems"].values() for d in items}  # fmt: skip
    assert drift[("hubspot", "billing_status")]["golden"] == "active"
    assert drift[("hubspot", "billing_status")]["value"] == "canceled"
    assert drift[("hubspot", "billing_status")]["owner"] == "stripe"
    assert drift[("hubspot", "billing_status")]["action"] == "push"
    assert drift[("hubspot", "name")]["action"] == "push"  # golden came from Stripe (provenance)
    assert drift[("product", "entitled")]["action"] == "push"
    assert drift[("stripe", "email")] | {"value": "mere@tuhoe.design"} == drift[("stripe", "email")]
    assert drift[("stripe", "email")]["action"] == "observe"  # the golden record is behind
    assert data["drift"] == 4
    words = {c["canonical_id"]: c["in_words"] for c in data["customers"]}
    assert "canceled in hubspot" in words[aroha]
    assert "active in synchub" in words[aroha]
    assert "locked in product" in words[mere]
    assert data["conflicts"]["recorded"] == 3  # hubspot status and name, product entitlement

    done = repair(h.hub, found, actor="cli_test")
    assert done["observed"] >= 1
    assert done["pushed"] == 2
    assert done["events"]["customer.updated"] >= 2
    assert done["events"]["subscription.activated"] == 1
    h.settle()

    again = reconcile(h.hub, record_conflicts=True, actor="cli_test").as_dict()
    assert again["drift"] == 0, again["customers"]
    assert again["conflicts"] == {"recorded": 0, "resolved": 3}
    assert h.boxes.product.accounts[mere]["entitled"] is True
    assert contact["properties"]["synchub_billing_status"] == "active"
    with h.hub.db.read() as conn:
        golden = store.get_golden(conn, "customer", mere) or {}
        rows, _ = entries(conn, workspace="live", limit=50, starting_after=None)
        open_conflicts = conn.execute(
            sa.select(sa.func.count()).select_from(store.conflicts).where(
                store.conflicts.c.status == "open")).scalar_one()  # fmt: skip
        repaired = conn.execute(sa.text(
            "SELECT count(*) FROM outbox_events WHERE traceparent = :tp"),
            {"tp": done["traceparent"]}).scalar_one()  # fmt: skip
    assert golden["email"] == "mere@tuhoe.design"
    assert [(r["actor"], r["action"]) for r in rows if r["action"] == "reconcile.repair"] == [
        ("cli_test", "reconcile.repair")
    ]
    assert open_conflicts == 0
    assert repaired >= 3  # every repair event carries the run's trace


def test_a_customer_missing_at_a_destination_is_created_by_the_repair(harness: Harness) -> None:
    h = harness
    day = _day(h)
    aroha = _canonical(h, "stripe", "customer", day["aroha"]["id"])
    contact_id = _links(h, aroha)["hubspot"]
    del h.boxes.hubspot.objects["contacts"][contact_id]  # deleted by hand in HubSpot
    found = reconcile(h.hub)
    [item] = found.drift
    assert (item.system, item.field, str(item.action)) == ("hubspot", "*", "push")
    repair(h.hub, found, actor="cli_test")
    h.settle()
    assert reconcile(h.hub).as_dict()["drift"] == 0
