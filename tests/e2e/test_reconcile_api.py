"""GET /v1/customers/{id}/drift and GET /v1/conflicts through the public API."""

from __future__ import annotations

from synchub.mdm import store
from synchub.reconciliation import reconcile
from tests.e2e.test_match_candidates import _bearer
from tests.harness import Harness


def _paying_customer(h: Harness) -> str:
    stripe = h.boxes.stripe
    price = stripe.create_price(nickname="Starter", unit_amount=4900, currency="nzd")
    aroha = stripe.create_customer(email="aroha@kowhai-cafe.co.nz", name="Aroha Ngāta",
                                   currency="nzd")  # fmt: skip
    stripe.create_subscription(aroha["id"], price["id"])
    h.deliver_stripe()
    with h.hub.db.read() as conn:
        found = store.find_canonical_id(conn, workspace="live", entity="customer",
                                        system="stripe", external_id=aroha["id"])  # fmt: skip
    assert found is not None
    return found


def _hand_edit(h: Harness, customer_id: str, **properties: str) -> None:
    with h.hub.db.read() as conn:
        contact_id = store.external_ids(conn, workspace="live", canonical_id=customer_id)["hubspot"]
    h.boxes.hubspot.objects["contacts"][contact_id]["properties"].update(properties)


def test_drift_of_one_customer_names_field_values_owner_and_action(harness: Harness) -> None:
    customer = _paying_customer(harness)
    auth = _bearer(harness, scopes="read:drift")
    clean = harness.http.get(f"/v1/customers/{customer}/drift", headers=auth)
    assert clean.status_code == 200, clean.text
    assert (clean.json()["drift"], clean.json()["systems"]) == (0, {})
    _hand_edit(harness, customer, synchub_billing_status="canceled")
    reply = harness.http.get(f"/v1/customers/{customer}/drift", headers=auth)
    body = reply.json()
    assert body["drift"] == 1
    [item] = body["systems"]["hubspot"]
    assert item["field"] == "billing_status"
    assert (item["golden"], item["value"], item["owner"], item["action"]) == (
        "active", "canceled", "stripe", "push")  # fmt: skip
    assert "canceled in hubspot" in body["in_words"]
    assert body["request_id"] == reply.headers["x-request-id"]


def test_drift_of_an_unknown_customer_is_a_problem(harness: Harness) -> None:
    auth = _bearer(harness, scopes="read:drift")
    reply = harness.http.get("/v1/customers/cus_01NOSUCHCUSTOMER00000000/drift", headers=auth)
    assert reply.status_code == 404
    assert reply.headers["content-type"] == "application/problem+json"
    assert "cus_01NOSUCHCUSTOMER00000000" in reply.json()["detail"]


def test_each_endpoint_needs_its_own_scope(harness: Harness) -> None:
    customer = _paying_customer(harness)
    reader = _bearer(harness, scopes="read:customers read:conflicts")
    refused = harness.http.get(f"/v1/customers/{customer}/drift", headers=reader)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert harness.http.get("/v1/conflicts", headers=reader).status_code == 200
    drift_only = _bearer(harness, scopes="read:drift")
    assert harness.http.get("/v1/conflicts", headers=drift_only).status_code == 403


def test_conflicts_are_listed_filtered_and_paged(harness: Harness) -> None:
    customer = _paying_customer(harness)
    _hand_edit(harness, customer, synchub_billing_status="canceled", firstname="A.")
    reconcile(harness.hub, record_conflicts=True, actor="test")
    auth = _bearer(harness, scopes="read:conflicts")
    first = harness.http.get("/v1/conflicts", params={"limit": 1, "status": "open"}, headers=auth)
    assert first.status_code == 200, first.text
    page = first.json()
    assert page["has_more"] is True
    assert len(page["data"]) == 1
    after = page["next_starting_after"]
    second = harness.http.get("/v1/conflicts", params={"limit": 1, "starting_after": after},
                              headers=auth)  # fmt: skip
    rows = [*page["data"], *second.json()["data"]]
    assert {r["field"] for r in rows} == {"billing_status", "name"}
    assert {(r["other_system"], r["owner"], r["status"], r["found_by"]) for r in rows} == {
        ("hubspot", "stripe", "open", "reconcile")}  # fmt: skip
    status_only = harness.http.get("/v1/conflicts", params={"field": "billing_status",
                                   "canonical_id": customer}, headers=auth).json()  # fmt: skip
    [conflict] = status_only["data"]
    assert (conflict["owner_value"], conflict["other_value"]) == ("active", "canceled")
    assert harness.http.get("/v1/conflicts", params={"status": "resolved"},
                            headers=auth).json()["data"] == []  # fmt: skip
    bad = harness.http.get("/v1/conflicts", params={"starting_after": "nope"}, headers=auth)
    assert bad.status_code in (400, 422)
    assert bad.headers["content-type"] == "application/problem+json"
    assert "starting_after" in bad.text
