"""In-process sandboxes keep their vendor state in `<data_dir>/sandboxes` when the hub makes
them: a hub built later on the same data directory continues the same vendors (objects,
numbers, stored idempotent replies) and never issues an id again. Sandboxes a test passes in
stay fresh and write nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from synchub.bootstrap import Hub, Sandboxes, build_hub, new_sandboxes
from synchub.config import Settings
from synchub.connectors import standard_webhooks
from synchub.connectors.xero.client import dumps_exact
from synchub.connectors.xero.sandbox import BASE
from synchub.core.clock import FixedClock
from synchub.db import Database
from tests.conftest import REPO
from tests.harness import make_harness

NOW = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)


def _hub(data_dir: Path) -> Hub:
    settings = Settings(
        register_dir=REPO / "register",
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'synchub.db'}",
    )
    return build_hub(settings, clock=FixedClock(NOW))


def _boxes(hub: Hub) -> Sandboxes:
    assert hub.sandboxes is not None
    return hub.sandboxes


def _hubspot_upsert(boxes: Sandboxes, email: str) -> dict[str, Any]:
    with httpx.Client(transport=boxes.hubspot.transport(), base_url="https://api.hubapi.com") as h:
        response = h.post(
            "/crm/v3/objects/contacts/batch/upsert",
            headers={"Authorization": f"Bearer {boxes.hubspot.token}"},
            json={"inputs": [{"idProperty": "email", "id": email, "properties": {}}]},
        )
    assert response.status_code == 200, response.text
    return dict(response.json()["results"][0])


def _xero(boxes: Sandboxes, method: str, path: str, body: str = "", key: str = "") -> Any:
    headers = {
        "Authorization": f"Bearer {boxes.xero.token}",
        "xero-tenant-id": boxes.xero.tenant_id,
        "Content-Type": "application/json",
    }
    if key:
        headers["Idempotency-Key"] = key
    with httpx.Client(transport=boxes.xero.transport(), base_url="https://api.xero.com") as h:
        return h.request(method, BASE + path, headers=headers, content=body.encode())


def _xero_invoice(boxes: Sandboxes, contact_id: str, reference: str) -> dict[str, Any]:
    line = {"Description": "Starter", "Quantity": 1, "UnitAmount": Decimal("12.50"),
            "TaxAmount": Decimal("1.88")}  # fmt: skip
    invoice = {"Type": "ACCREC", "Status": "AUTHORISED", "Reference": reference,
               "Contact": {"ContactID": contact_id}, "LineAmountTypes": "Exclusive",
               "LineItems": [line]}  # fmt: skip
    body = dumps_exact({"Invoices": [invoice]})
    response = _xero(boxes, "POST", "/Invoices", body)
    assert response.status_code == 200, response.text
    return dict(response.json()["Invoices"][0])


def _product_callback(boxes: Sandboxes, customer_id: str, msg_id: str) -> int:
    data = {"customer_id": customer_id, "entitled": True, "billing_status": "active"}
    body = json.dumps({"type": "subscription.activated", "data": data}).encode()
    stamp = int(boxes.product.clock.now().timestamp())
    headers = standard_webhooks.headers_for(
        body, msg_id=msg_id, timestamp=stamp, secrets_=[boxes.product.secret]
    )
    with httpx.Client(transport=boxes.product.transport(), base_url="http://product") as h:
        return h.post("/synchub/callbacks", content=body, headers=headers).status_code


def test_a_later_hub_on_the_same_data_dir_continues_the_vendors(tmp_path: Path) -> None:
    first = _hub(tmp_path)
    boxes = _boxes(first)
    aroha = _hubspot_upsert(boxes, "aroha@kowhai-cafe.co.nz")
    by_hand = boxes.hubspot.create_contact({"email": "lead@example.com"})
    contact = _xero(boxes, "POST", "/Contacts", '{"Contacts":[{"Name":"Kōwhai Café"}]}',
                    key="contact-1")  # fmt: skip
    contact_id = contact.json()["Contacts"][0]["ContactID"]
    invoice = _xero_invoice(boxes, contact_id, "in_1")
    price = boxes.stripe.create_price(nickname="Starter", unit_amount=4900, currency="nzd")
    customer = boxes.stripe.create_customer(email="aroha@kowhai-cafe.co.nz", name="Aroha",
                                            currency="nzd")  # fmt: skip
    boxes.stripe.create_subscription(customer["id"], price["id"])  # bills SBX-0001
    assert _product_callback(boxes, "cus_1", "msg_1") == 204
    first.close()
    kept = tmp_path / "sandboxes"
    names = sorted(p.name for p in kept.iterdir())  # no temporary file is left behind
    assert names == ["hubspot.json", "product.json", "stripe.json", "xero.json"]

    second = _hub(tmp_path)
    again = _boxes(second)
    assert again is not boxes
    # the same records, read back through each vendor's API
    assert again.hubspot.objects["contacts"][aroha["id"]]["properties"]["email"] == (
        "aroha@kowhai-cafe.co.nz"
    )
    assert _hubspot_upsert(again, "aroha@kowhai-cafe.co.nz")["new"] is False
    read = _xero(again, "GET", f"/Invoices/{invoice['InvoiceID']}")
    assert read.status_code == 200
    assert '"UnitAmount":12.50' in read.text  # exact decimals survived the file
    assert '"Total":14.38' in read.text
    with httpx.Client(transport=again.stripe.transport(), base_url="https://api.stripe.com") as h:
        got = h.get(f"/v1/customers/{customer['id']}",
                    headers={"Authorization": f"Bearer {again.stripe.api_key}"})  # fmt: skip
    assert got.status_code == 200
    assert got.json()["email"] == "aroha@kowhai-cafe.co.nz"
    # a repeated Idempotency-Key replays the first process's reply: no second contact
    replay = _xero(again, "POST", "/Contacts", '{"Contacts":[{"Name":"Kōwhai Café"}]}',
                   key="contact-1")  # fmt: skip
    assert replay.json()["Contacts"][0]["ContactID"] == contact_id
    assert len(again.xero.contacts) == 1
    # a callback applied before is a duplicate; the account is still there
    assert _product_callback(again, "cus_1", "msg_1") == 204
    assert again.product.duplicates == 1
    assert again.product.accounts["cus_1"]["entitled"] is True

    # ids and numbers go on from where the first process stopped: none is issued twice
    bea = _hubspot_upsert(again, "bea@example.com")
    assert int(bea["id"]) > max(int(aroha["id"]), int(by_hand))
    assert _xero_invoice(again, contact_id, "in_2")["InvoiceNumber"] == "INV-0002"
    later = again.stripe.create_customer(email="bea@example.com", name="Bea", currency="nzd")
    sub = again.stripe.create_subscription(later["id"], price["id"])
    assert again.stripe.objects["invoices"][sub["latest_invoice"]]["number"] == "SBX-0002"
    assert again.stripe.clock.now() >= boxes.stripe.clock.now()
    second.close()

    third = _boxes(_hub(tmp_path))  # the second process's writes were kept too
    assert bea["id"] in third.hubspot.objects["contacts"]
    assert len(third.xero.invoices) == 2
    assert len(third.stripe.objects["customers"]) == 2


def test_merge_notifications_never_reuse_an_event_id(tmp_path: Path) -> None:
    first = _boxes(_hub(tmp_path))
    a = first.hubspot.create_contact({"email": "a@example.com"})
    b = first.hubspot.create_contact({"email": "b@example.com"})
    first.hubspot.merge_contacts(a, b)
    [sent] = first.hubspot.notifications

    second = _boxes(_hub(tmp_path))
    assert second.hubspot.merged_into == {b: a}
    c = second.hubspot.create_contact({"email": "c@example.com"})
    second.hubspot.merge_contacts(a, c)
    [later] = second.hubspot.notifications
    assert later["eventId"] > sent["eventId"]


def test_sandboxes_given_to_the_hub_stay_fresh_and_write_nothing(
    sqlite_db: Database, tmp_path: Path
) -> None:
    h = make_harness(sqlite_db, FixedClock(NOW), data_dir=tmp_path)
    _hubspot_upsert(h.boxes, "aroha@kowhai-cafe.co.nz")
    h.boxes.stripe.create_customer(email="aroha@kowhai-cafe.co.nz", name="Aroha", currency="nzd")
    assert not (tmp_path / "sandboxes").exists()
    assert new_sandboxes(stripe_start=NOW).hubspot.objects["contacts"] == {}


def test_state_of_another_vendor_is_refused(tmp_path: Path) -> None:
    kept = tmp_path / "sandboxes"
    kept.mkdir()
    (kept / "xero.json").write_text(json.dumps({"vendor": "hubspot", "next_id": 1}))
    with pytest.raises(ValueError, match="holds no xero sandbox state"):
        new_sandboxes(stripe_start=NOW, state_dir=kept)
