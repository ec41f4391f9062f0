"""Merges through the public API (merge, list, get, unmerge: idempotent, audited, problem+json)
and HubSpot contact merges arriving as signed webhooks (the crosswalk follows HubSpot)."""

from __future__ import annotations

from typing import Any

import pytest

from synchub.mdm import links
from tests.e2e.test_match_candidates import _bearer, _queue
from tests.harness import Harness

HOOK = "http://testserver/v1/webhooks/hubspot"


@pytest.fixture
def auth(harness: Harness) -> dict[str, str]:
    """A live-workspace client holding every scope."""
    return _bearer(harness)


def _customer(h: Harness, auth: dict[str, str], external_id: str, email: str) -> str:
    body = {"external_id": external_id, "name": external_id, "email": email}
    made = h.http.post("/v1/customers", headers=auth, json=body)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _two(h: Harness, auth: dict[str, str]) -> tuple[str, str]:
    """A product customer and a Stripe customer (with a HubSpot contact) that are one."""
    [candidate] = _queue(h, auth)
    return str(candidate["target_id"]), str(candidate["record_id"])


def test_merge_then_unmerge_through_the_api(harness: Harness, auth: dict[str, str]) -> None:
    survivor, other = _two(harness, auth)
    url = f"/v1/customers/{survivor}/merge"
    key = {**auth, "Idempotency-Key": "m-1"}
    merged = harness.http.post(url, json={"merged_id": other}, headers=key)
    assert merged.status_code == 201, merged.text
    body = merged.json()
    assert (body["rule"], body["status"], body["merged_id"]) == ("manual", "merged", other)
    assert body["moved_sources"] == [{"system": "stripe", "external_id": body["moved_sources"][0]
                                      ["external_id"]}]  # fmt: skip
    replay = harness.http.post(url, json={"merged_id": other}, headers=key)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == body
    assert harness.http.get(f"/v1/customers/{other}", headers=auth).json()["deleted"] is True
    listed = harness.http.get("/v1/merges", params={"customer_id": other}, headers=auth).json()
    assert [m["id"] for m in listed["data"]] == [body["id"]]
    assert listed["data"][0]["object"] == "merge"

    unmerge = f"/v1/merges/{body['id']}/unmerge"
    undone = harness.http.post(unmerge, headers={**auth, "Idempotency-Key": "u-1"})
    assert undone.status_code == 200, undone.text
    assert undone.json()["status"] == "undone"
    assert undone.json()["unmerge"]["moved_back"] == body["moved_sources"]
    replay = harness.http.post(unmerge, headers={**auth, "Idempotency-Key": "u-1"})
    assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (200, "true")
    again = harness.http.post(unmerge, headers={**auth, "Idempotency-Key": "u-2"})
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["code"] == "already_unmerged"
    assert body["id"] in again.json()["detail"]
    restored = harness.http.get(f"/v1/customers/{other}", headers=auth).json()
    assert restored["deleted"] is False
    assert "stripe" in restored["external_ids"]
    got = harness.http.get(f"/v1/merges/{body['id']}", headers=auth).json()
    assert got["unmerged_by"] == got["actor"]
    undone_list = harness.http.get("/v1/merges", params={"status": "undone"}, headers=auth)
    assert [m["id"] for m in undone_list.json()["data"]] == [body["id"]]
    audit = harness.http.get("/v1/audit", params={"limit": 100}, headers=auth).json()["data"]
    assert {"customer.merge", "customer.merge.replayed", "merge.unmerge"} <= {
        e["action"] for e in audit
    }
    harness.settle()  # the events go through the outbox and are delivered
    assert harness.http.get("/v1/dead-letters", headers=auth).json()["data"] == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/customers/cus_nope/merge", {"merged_id": "KNOWN"}),
        ("POST", "/v1/customers/KNOWN/merge", {"merged_id": "cus_nope"}),
        ("GET", "/v1/merges/mrg_nope", None),
        ("POST", "/v1/merges/mrg_nope/unmerge", None),
    ],
)
def test_unknown_ids_are_404_problems(
    harness: Harness, auth: dict[str, str], method: str, path: str, body: Any
) -> None:
    known = _customer(harness, auth, "p-1", "one@kowhai.nz")
    path = path.replace("KNOWN", known)
    json_body = {k: v.replace("KNOWN", known) for k, v in body.items()} if body else None
    reply = harness.http.request(method, path, json=json_body, headers=auth)
    assert reply.status_code == 404, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["code"] == "not_found"


def test_bad_merges_are_problems(harness: Harness, auth: dict[str, str]) -> None:
    one = _customer(harness, auth, "p-1", "one@kowhai.nz")
    two = _customer(harness, auth, "p-2", "two@kowhai.nz")
    url = f"/v1/customers/{one}/merge"
    missing = harness.http.post(url, json={}, headers=auth)
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["pointer"] == "/merged_id"
    itself = harness.http.post(url, json={"merged_id": one}, headers=auth)
    assert (itself.status_code, itself.json()["code"]) == (422, "validation_failed")
    assert itself.json()["errors"][0]["pointer"] == "/merged_id"
    same_system = harness.http.post(url, json={"merged_id": two}, headers=auth)
    assert same_system.status_code == 409  # two product customers stay two
    assert "product" in same_system.json()["detail"]


def test_merging_needs_admin_matches_and_reading_needs_read_matches(
    harness: Harness, auth: dict[str, str]
) -> None:
    survivor, other = _two(harness, auth)
    reader = _bearer(harness, scopes="read:matches")
    writer = _bearer(harness, scopes="read:customers write:customers")
    refused = harness.http.post(f"/v1/customers/{survivor}/merge", json={"merged_id": other},
                                headers=reader)  # fmt: skip
    assert refused.status_code == 403
    assert refused.json()["code"] == "insufficient_scope"
    assert harness.http.get("/v1/merges", headers=writer).status_code == 403
    assert harness.http.get("/v1/merges", headers=reader).status_code == 200
    assert harness.http.post("/v1/merges/mrg_x/unmerge", headers=reader).status_code == 403
    other_ws = _bearer(harness, workspace="sandbox-acme")
    made = harness.http.post(f"/v1/customers/{survivor}/merge", json={"merged_id": other},
                             headers=auth).json()  # fmt: skip
    assert harness.http.get(f"/v1/merges/{made['id']}", headers=other_ws).status_code == 404


# -- HubSpot contact merges --------------------------------------------------------------------


def _now_ms(h: Harness) -> int:
    return int(h.clock.now().timestamp() * 1000)


def _contact_of(h: Harness, auth: dict[str, str], customer_id: str) -> str:
    record = h.http.get(f"/v1/customers/{customer_id}", headers=auth).json()
    return str(record["external_ids"]["hubspot"])


def test_a_hubspot_merge_merges_the_golden_records(harness: Harness, auth: dict[str, str]) -> None:
    """The product's customer got a HubSpot contact earlier; the Stripe customer (waiting for
    review) got one from the flow. A person merges the two contacts in HubSpot."""
    product_side, stripe_side = _two(harness, auth)
    harness.settle()
    stripe_contact = _contact_of(harness, auth, stripe_side)
    contact = harness.boxes.hubspot.create_contact({"email": "aroha@kowhai.nz"})
    with harness.hub.db.write() as conn:  # as if an earlier delivery had made it
        links.link(conn, workspace="live", entity="customer", system="hubspot",
                   external_id=contact, canonical_id=product_side, rule="delivered",
                   at=harness.clock.now())  # fmt: skip
    count = len(harness.http.get("/v1/customers", headers=auth).json()["data"])

    harness.boxes.hubspot.merge_contacts(contact, stripe_contact)
    [reply] = harness.boxes.hubspot.deliver_webhooks(harness.http, HOOK, now_ms=_now_ms(harness))
    assert reply.status_code == 200, reply.text
    assert reply.json()["received"] == 1
    [merge_id] = reply.json()["merges"]
    shown = harness.http.get(f"/v1/merges/{merge_id}", headers=auth).json()
    assert (shown["rule"], shown["survivor_id"], shown["merged_id"]) == (
        "vendor_merge", product_side, stripe_side)  # fmt: skip
    customers = harness.http.get("/v1/customers", headers=auth).json()["data"]
    assert len(customers) == count  # never a new customer
    survivor = harness.http.get(f"/v1/customers/{product_side}", headers=auth).json()
    assert survivor["external_ids"]["hubspot"] == contact  # the surviving contact, not the gone
    assert "stripe" in survivor["external_ids"]
    assert harness.http.get("/v1/match-candidates", params={"status": "open"},
                            headers=auth).json()["data"] == []  # fmt: skip
    harness.settle()
    assert harness.http.get("/v1/dead-letters", headers=auth).json()["data"] == []
    emails = {c["id"]: c for c in harness.boxes.hubspot.contacts()}
    assert stripe_contact not in emails  # HubSpot removed it; synchub updates the primary
    assert emails[contact]["synchub_customer_id"] == product_side


def test_a_hubspot_merge_into_a_contact_synchub_never_saw(
    harness: Harness, auth: dict[str, str]
) -> None:
    """A sales rep's own contact absorbs the one synchub made: the crosswalk follows."""
    harness.boxes.stripe.create_customer(email="kiri@kowhai.nz", name="Kiri Te", currency="nzd")
    harness.deliver_stripe()
    [customer] = harness.http.get("/v1/customers", headers=auth).json()["data"]
    ours = _contact_of(harness, auth, customer["id"])
    rep = harness.boxes.hubspot
    theirs = rep.create_contact({"email": "k@kowhai.nz", "firstname": "Kiri"})
    rep.merge_contacts(theirs, ours)
    reply = rep.deliver_webhooks(harness.http, HOOK, now_ms=_now_ms(harness))[0].json()
    assert (reply["merges"], reply["refused"]) == ([], [])
    assert _contact_of(harness, auth, customer["id"]) == theirs
    assert len(harness.http.get("/v1/customers", headers=auth).json()["data"]) == 1


def test_hubspot_notifications_are_verified_and_deduplicated(
    harness: Harness, auth: dict[str, str]
) -> None:
    harness.boxes.stripe.create_customer(email="a@kowhai.nz", name="A", currency="nzd")
    harness.boxes.stripe.create_customer(email="b@kowhai.nz", name="B", currency="nzd")
    harness.deliver_stripe()
    ids = [c["id"] for c in harness.http.get("/v1/customers", headers=auth).json()["data"]]
    first, second = (_contact_of(harness, auth, i) for i in ids)
    rep = harness.boxes.hubspot
    rep.merge_contacts(first, second)
    pending = list(rep.notifications)
    stale = rep.deliver_webhooks(harness.http, HOOK, now_ms=_now_ms(harness) - 301_000)[0]
    assert stale.status_code == 401
    assert stale.headers["content-type"] == "application/problem+json"
    assert "detail" not in stale.json()
    rep.notifications = list(pending)
    forged_headers = {"X-HubSpot-Signature-v3": "bm9wZQ==",
                      "X-HubSpot-Request-Timestamp": str(_now_ms(harness))}  # fmt: skip
    forged = harness.http.post(HOOK, content=b"[]", headers=forged_headers)
    assert forged.status_code == 401
    reply = rep.deliver_webhooks(harness.http, HOOK, now_ms=_now_ms(harness))[0].json()
    assert reply["merges"] == []  # two Stripe customers: Stripe keeps two, so does synchub
    assert "already holds stripe id" in reply["refused"][0]
    rep.notifications = list(pending)  # HubSpot retries the batch
    again = rep.deliver_webhooks(harness.http, HOOK, now_ms=_now_ms(harness))[0].json()
    assert (again["received"], again["duplicates"]) == (0, 1)
    assert _contact_of(harness, auth, ids[0]) == first
    assert "hubspot" not in harness.http.get(f"/v1/customers/{ids[1]}", headers=auth).json()[
        "external_ids"
    ]  # fmt: skip
