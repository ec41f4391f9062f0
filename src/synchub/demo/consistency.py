"""Does every system now agree? Compares the golden records with each sandbox's state.

A record whose delivery is a dead letter is reported as *explained* (it is in the dead-letter
queue with its reason), not as agreement; anything else that differs is a disagreement.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from synchub.bootstrap import Hub, Sandboxes
from synchub.core.entities import is_entitled
from synchub.core.money import Money
from synchub.events import store as event_store
from synchub.mdm import store as mdm_store


@dataclass
class Consistency:
    """The verdict, with every difference spelled out."""

    disagreements: list[str] = field(default_factory=list)
    explained: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    checked: int = 0

    @property
    def consistent(self) -> bool:
        """True when nothing disagrees and nothing was created twice."""
        return not self.disagreements and not self.duplicates


def _dead_subjects(hub: Hub) -> dict[tuple[str, str], str]:
    with hub.db.read() as conn:
        dead = event_store.list_deliveries(conn, status="dead")
        subjects = {}
        for row in dead:
            event = event_store.get_event(conn, row["event_id"]) or {}
            subjects[(row["destination"], event.get("subject", ""))] = row["dead_reason"] or ""
    return subjects


def check(hub: Hub, boxes: Sandboxes) -> Consistency:
    """Compare golden records with Stripe, HubSpot, Xero and the product."""
    result = Consistency()
    ws = hub.register.workspace
    with hub.db.read() as conn:
        customers = mdm_store.list_golden(conn, "customer", workspace=ws)
        invoices = mdm_store.list_golden(conn, "invoice", workspace=ws)
        subscriptions = mdm_store.list_golden(conn, "subscription", workspace=ws)
        links = {
            c["id"]: mdm_store.external_ids(conn, workspace=ws, canonical_id=c["id"])
            for c in [*customers, *invoices, *subscriptions]
        }
    dead = _dead_subjects(hub)
    _check_stripe(result, boxes, customers, subscriptions, invoices, links)
    _check_hubspot(result, boxes, customers, dead)
    _check_xero(result, boxes, customers, invoices, links, dead)
    _check_product(result, boxes, customers, dead)
    return result


def _differ(result: Consistency, what: str, expected: Any, actual: Any) -> None:
    result.checked += 1
    if expected != actual:
        result.disagreements.append(f"{what}: golden {expected!r} but found {actual!r}")


def _check_stripe(
    result: Consistency,
    boxes: Sandboxes,
    customers: list[dict[str, Any]],
    subscriptions: list[dict[str, Any]],
    invoices: list[dict[str, Any]],
    links: dict[str, dict[str, str]],
) -> None:
    stripe = boxes.stripe.objects
    for c in customers:
        source = stripe["customers"].get(links[c["id"]].get("stripe", ""))
        if source is None:
            result.disagreements.append(f"customer {c['id']} is not in Stripe")
            continue
        _differ(result, f"stripe customer {source['id']} name", c["name"], source["name"])
        _differ(
            result,
            f"stripe customer {source['id']} email",
            c["email"],
            source["email"].strip().casefold(),
        )
    for s in subscriptions:
        source = stripe["subscriptions"][links[s["id"]]["stripe"]]
        _differ(result, f"stripe subscription {source['id']} status", s["status"], source["status"])
    for i in invoices:
        source = stripe["invoices"][links[i["id"]]["stripe"]]
        _differ(result, f"stripe invoice {source['id']} status", i["status"], source["status"])
        _differ(result, f"stripe invoice {source['id']} total", i["total_minor"], source["total"])


def _check_hubspot(
    result: Consistency,
    boxes: Sandboxes,
    customers: list[dict[str, Any]],
    dead: dict[tuple[str, str], str],
) -> None:
    contacts = boxes.hubspot.contacts()
    counts = Counter(c["email"] for c in contacts)
    result.duplicates += [f"hubspot has {n} contacts for {e}" for e, n in counts.items() if n > 1]
    by_email = {c["email"]: c for c in contacts}
    for c in customers:
        contact = by_email.get(c["email"])
        if contact is None:
            _missing(result, dead, "hubspot", c["id"], f"hubspot contact for {c['id']}")
            continue
        _differ(
            result,
            f"hubspot contact {contact['id']} billing status",
            c["billing_status"] or "none",
            contact["synchub_billing_status"],
        )
        _differ(
            result,
            f"hubspot contact {contact['id']} name",
            c["name"],
            f"{contact['firstname']} {contact['lastname']}".strip(),
        )


def _check_xero(
    result: Consistency,
    boxes: Sandboxes,
    customers: list[dict[str, Any]],
    invoices: list[dict[str, Any]],
    links: dict[str, dict[str, str]],
    dead: dict[tuple[str, str], str],
) -> None:
    xero = boxes.xero
    numbers = Counter(
        c.get("ContactNumber") for c in xero.contacts.values() if c.get("ContactNumber")
    )
    result.duplicates += [
        f"xero has {n} contacts numbered {k}" for k, n in numbers.items() if n > 1
    ]
    refs = Counter(i["Reference"] for i in xero.invoices.values())
    result.duplicates += [f"xero has {n} invoices for {k}" for k, n in refs.items() if n > 1]
    paid = Counter(p["Invoice"]["InvoiceID"] for p in xero.payments.values())
    result.duplicates += [f"xero invoice {k} has {n} payments" for k, n in paid.items() if n > 1]
    for c in customers:
        contact = xero.contacts.get(links[c["id"]].get("xero", ""))
        if contact is None:
            _missing(result, dead, "xero", c["id"], f"xero contact for {c['id']}")
            continue
        _differ(
            result,
            f"xero contact {contact['ContactID']} email",
            c["email"],
            contact.get("EmailAddress"),
        )
    for i in invoices:
        if i["status"] not in ("open", "paid"):
            continue
        found = xero.invoices.get(links[i["id"]].get("xero", ""))
        if found is None:
            _missing(result, dead, "xero", i["id"], f"xero invoice for {i['id']}")
            continue
        total = Money(i["total_minor"], i["currency"]).to_decimal()
        _differ(result, f"xero invoice {found['InvoiceID']} total", total, Decimal(found["Total"]))
        _differ(
            result,
            f"xero invoice {found['InvoiceID']} status",
            "PAID" if i["status"] == "paid" else "AUTHORISED",
            found["Status"],
        )


def _check_product(
    result: Consistency,
    boxes: Sandboxes,
    customers: list[dict[str, Any]],
    dead: dict[tuple[str, str], str],
) -> None:
    accounts = boxes.product.accounts
    for c in customers:
        status = c["billing_status"]
        if status in (None, "none") and c["id"] not in accounts:
            continue  # never billed: the product has nothing to unlock
        account = accounts.get(c["id"])
        if account is None:
            _missing(result, dead, "product", c["id"], f"product account for {c['id']}")
            continue
        _differ(
            result, f"product account {c['id']} entitled", is_entitled(status), account["entitled"]
        )


def _missing(
    result: Consistency, dead: dict[tuple[str, str], str], destination: str, subject: str, what: str
) -> None:
    result.checked += 1
    reason = dead.get((destination, subject))
    if reason is not None:
        result.explained.append(f"{what}: in the dead-letter queue ({reason})")
    else:
        result.disagreements.append(f"{what} is missing")
