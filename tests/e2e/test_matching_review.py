"""A new user's review of matching and merges (issue 5): a product-only customer may change
its email, an unmerge says so on the candidate it undid, a self-merge is a 422 naming the
field, and a customer renders the same from every endpoint."""

from __future__ import annotations

import re

import pytest

from tests.e2e.test_match_candidates import _bearer, _queue
from tests.harness import Harness

MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def auth(harness: Harness) -> dict[str, str]:
    """A live-workspace client holding every scope."""
    return _bearer(harness)


def _create(h: Harness, auth: dict[str, str], key: str | None = None, **fields: str) -> dict:
    body = {"external_id": "user-7", "email": "mere@kowhai.nz", "name": "Mere", **fields}
    headers = {**auth, **({"Idempotency-Key": key} if key else {})}
    made = h.http.post("/v1/customers", json=body, headers=headers)
    assert made.status_code in (200, 201), made.text
    return dict(made.json())


def test_a_product_only_customer_can_change_its_email(
    harness: Harness, auth: dict[str, str]
) -> None:
    made = _create(harness, auth)
    assert "stripe" not in made["external_ids"]  # Stripe, the owner, holds nothing for it
    url = f"/v1/customers/{made['id']}"
    changed = harness.http.patch(url, json={"email": "mere@kowhai.co.nz"}, headers=auth)
    assert changed.status_code == 200, changed.text
    assert changed.json()["email"] == "mere@kowhai.co.nz"
    assert harness.http.get(url, headers=auth).json()["email"] == "mere@kowhai.co.nz"


def test_a_customer_stripe_holds_keeps_its_email_owned_by_stripe(
    harness: Harness, auth: dict[str, str]
) -> None:
    harness.boxes.stripe.create_customer(email="tipene@kowhai.nz", name="Tipene", currency="nzd")
    harness.deliver_stripe()
    [customer] = harness.http.get("/v1/customers", headers=auth).json()["data"]
    assert "stripe" in customer["external_ids"]
    refused = harness.http.patch(f"/v1/customers/{customer['id']}",
                                 json={"email": "other@kowhai.nz"}, headers=auth)  # fmt: skip
    assert refused.status_code == 422
    assert refused.json()["code"] == "field_owned_elsewhere"
    assert "owned by stripe" in refused.text


def test_unmerging_a_confirmed_candidate_marks_it_unmerged(
    harness: Harness, auth: dict[str, str]
) -> None:
    [candidate] = _queue(harness, auth)
    url = f"/v1/match-candidates/{candidate['id']}"
    confirmed = harness.http.post(f"{url}/confirm", headers={**auth, "Idempotency-Key": "c-1"})
    merge_id = confirmed.json()["merge_id"]
    undone = harness.http.post(f"/v1/merges/{merge_id}/unmerge",
                               headers={**auth, "Idempotency-Key": "u-1"})  # fmt: skip
    assert undone.status_code == 200, undone.text
    after = harness.http.get(url, headers=auth).json()
    assert (after["status"], after["merge_id"]) == ("unmerged", merge_id)
    listed = harness.http.get("/v1/match-candidates", params={"status": "unmerged"},
                              headers=auth).json()["data"]  # fmt: skip
    assert [c["id"] for c in listed] == [candidate["id"]]
    assert harness.http.get("/v1/match-candidates", params={"status": "confirmed"},
                            headers=auth).json()["data"] == []  # fmt: skip


def test_merging_a_customer_into_itself_is_a_422_naming_merged_id(
    harness: Harness, auth: dict[str, str]
) -> None:
    made = _create(harness, auth)
    reply = harness.http.post(f"/v1/customers/{made['id']}/merge", json={"merged_id": made["id"]},
                              headers={**auth, "Idempotency-Key": "self-1"})  # fmt: skip
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert [p["pointer"] for p in reply.json()["errors"]] == ["/merged_id"]


def test_every_customer_rendering_is_the_same(harness: Harness, auth: dict[str, str]) -> None:
    created = _create(harness, auth, key="k-1")
    replayed = _create(harness, auth, key="k-1")
    got = harness.http.get(f"/v1/customers/{created['id']}", headers=auth).json()
    [listed] = harness.http.get("/v1/customers", headers=auth).json()["data"]
    renderings = [created, replayed, got, listed]
    for body in renderings:
        body.pop("request_id", None)
    assert created == replayed == got == listed
    assert "tax_id" in got
    for name in ("created_at", "updated_at"):
        assert MILLIS.match(got[name]), got[name]
