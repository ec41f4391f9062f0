"""Reconciliation after a new user's review (issue 5): a record Stripe never held (a
hand-sent webhook) is `orphaned`, not drift; held records are counted as held everywhere; an
owner that holds no record for a customer is not taken as that field's owner."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from synchub.mdm import store
from synchub.reconciliation import reconcile, repair
from tests.conftest import REPO
from tests.e2e.test_match_candidates import _bearer
from tests.harness import Harness

HAND_SENT = REPO / "tests" / "data" / "stripe" / "events" / "customer.created.json"


def test_a_hand_sent_stripe_customer_is_orphaned_not_drift(harness: Harness) -> None:
    assert harness.post_event(Path(HAND_SENT).read_bytes()).status_code == 200
    harness.settle()  # no email: its HubSpot delivery dies (held)
    data = reconcile(harness.hub, record_conflicts=True).as_dict()
    assert data["drift"] == 0, data["customers"]
    assert data["orphaned"] == 1
    assert "hand-sent" in (data["orphaned_hint"] or "")
    [customer] = data["customers"]
    [orphan] = customer["orphaned"]
    assert (orphan["system"], orphan["field"], orphan["action"]) == ("stripe", "*", "orphaned")
    assert "stripe" not in customer["systems"]  # listed apart, not as drift
    # Per customer and overall, held records are counted as held, never as drift.
    assert customer["drift"] == sum(c["drift"] for c in data["customers"]) == data["drift"]
    assert customer["held"] == data["held"] == 1
    assert data["conflicts"]["recorded"] == 0


def test_the_cli_exits_0_when_only_orphaned_and_held_records_remain(harness: Harness) -> None:
    from rich.console import Console

    from synchub.mdm.cli import print_report

    harness.post_event(Path(HAND_SENT).read_bytes())
    harness.settle()
    data = reconcile(harness.hub).as_dict()
    console = Console(record=True, width=300)
    print_report(data, console)
    text = console.export_text()
    assert "drift: 0 field(s)" in text
    assert "orphaned: 1 record(s)" in text
    assert "held in the dead-letter queue: 1 record(s)" in text


def test_an_owner_without_a_record_does_not_own_the_customer(
    harness: Harness,
) -> None:
    auth = _bearer(harness)
    made = harness.http.post("/v1/customers", headers=auth, json={
        "external_id": "u-1", "email": "mere@kowhai.nz", "name": "Mere"})  # fmt: skip
    assert made.status_code == 201, made.text
    cid = made.json()["id"]
    harness.settle()
    hubspot = harness.boxes.hubspot
    [contact] = [c for c in hubspot.objects["contacts"].values()
                 if c["properties"].get("email") == "mere@kowhai.nz"]  # fmt: skip
    contact["properties"]["email"] = "someone@else.nz"  # HubSpot drifts on the email
    report = reconcile(harness.hub, record_conflicts=True)
    [drift] = [d for d in report.drift if d.record_id == cid and d.field == "email"]
    assert drift.owner != "stripe"  # Stripe owns emails but holds nothing for this customer
    assert drift.action == "push"
    assert "stripe" not in drift.reason
    with harness.hub.db.read() as conn:  # the value's source is right, not Stripe
        owners = conn.execute(sa.select(store.conflicts.c.owner)).scalars().all()
    assert owners == [drift.owner] == ["product"]
    result = repair(harness.hub, report, actor="test")
    assert result["events_from"] == {"observed": 0, "pushed": 1}
    assert sum(result["events"].values()) == 1
