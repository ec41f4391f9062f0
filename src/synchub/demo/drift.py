"""Monday morning: the systems have drifted apart overnight, and reconciliation puts them right.

Three things happen that no webhook tells synchub about: a sales rep marks a paying customer
canceled in HubSpot by hand, the product locks a paying account after a bad deploy, and
Stripe's email change for a customer never arrives as a webhook.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from synchub.bootstrap import Hub, Sandboxes
from synchub.mdm import store as mdm_store
from synchub.reconciliation import reconcile, repair


def _customer_id(hub: Hub, email: str) -> str | None:
    with hub.db.read() as conn:
        for row in mdm_store.list_golden(conn, "customer", workspace=hub.register.workspace):
            if row["email"] == email:
                return str(row["id"])
    return None


def drift_overnight(hub: Hub, boxes: Sandboxes) -> list[str]:
    """Make the sandboxes disagree with the golden records; what was done, in words."""
    done = []
    for contact in boxes.hubspot.objects["contacts"].values():
        if contact["properties"].get("email") == "aroha@kowhai-cafe.co.nz":
            contact["properties"]["synchub_billing_status"] = "canceled"
            done.append("a sales rep marks Aroha canceled in HubSpot by hand")
    liam = _customer_id(hub, "liam@harbourbikes.com.au")
    if liam and liam in boxes.product.accounts:
        boxes.product.accounts[liam]["entitled"] = False
        done.append("a bad deploy locks Liam's paying account in the product")
    for customer in boxes.stripe.objects["customers"].values():
        if customer["email"] == "haruto@sakura-tea.jp":
            boxes.stripe.update_customer(customer["id"], email="haruto@sakuratea.co.jp")
            boxes.stripe.hold()  # the webhook is lost
            done.append("Haruto's new email is changed in Stripe; the webhook is lost")
    return done


def reconcile_and_repair(hub: Hub, settle: Callable[[], bool]) -> dict[str, Any]:
    """Reconcile, repair, let the workers deliver, and reconcile again."""
    before = reconcile(hub, record_conflicts=True, actor="demo")
    found = before.as_dict()
    repaired = repair(hub, before, actor="demo") if before.drift else None
    settled = settle()
    after = reconcile(hub, record_conflicts=True, actor="demo").as_dict()
    return {
        "drift_found": found["drift"],
        "held_found": found["held"],
        "orphaned_found": found["orphaned"],
        "drift_after_repair": after["drift"],
        "held": after["held"],
        "repair": repaired,
        "settled": settled,
        "conflicts_recorded": found["conflicts"]["recorded"],
        "conflicts_resolved": after["conflicts"]["resolved"],
        "found": [_in_words(c) for c in found["customers"]],
        "remaining": after["customers"],
        "unreachable": after["unreachable"],
    }


def _in_words(customer: dict[str, Any]) -> dict[str, Any]:
    lines = [
        f"{system} {d['field']}: golden {d['golden']!r}, {system} {d['value']!r} → {d['action']}"
        for system, items in customer["systems"].items()
        for d in items
    ]
    return {"canonical_id": customer["canonical_id"], "name": customer["name"],
            "in_words": customer["in_words"], "drift": lines}  # fmt: skip
