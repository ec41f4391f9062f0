"""Match candidates through the public API: a Stripe customer that may be a product customer
waits for a person, who confirms (merge) or rejects it, idempotently and audited."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from synchub.auth.model import SCOPES
from tests.harness import Harness

ALL = " ".join(SCOPES)


def _bearer(h: Harness, *, scopes: str = ALL, workspace: str = "live") -> dict[str, str]:
    assert h.hub.auth is not None
    with h.hub.db.write() as conn:
        client_id, secret = h.hub.auth.create_client(
            conn, name="steward", scopes=scopes.split(), workspace=workspace, actor="test"
        )
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    reply = h.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                        headers={"Authorization": f"Basic {basic}"})  # fmt: skip
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


@pytest.fixture
def auth(harness: Harness) -> dict[str, str]:
    """A live-workspace client holding every scope."""
    return _bearer(harness)


def _queue(h: Harness, auth: dict[str, str], n: int = 1) -> list[dict[str, Any]]:
    """The product knows Aroha; Stripe then sends customers spelt a little differently."""
    created = h.http.post(
        "/v1/customers",
        json={"external_id": "prod-1", "name": "Aroha Ngata", "email": "aroha@kowhai.nz"},
        headers=auth,
    )
    assert created.status_code == 201, created.text
    for i in range(n):
        h.boxes.stripe.create_customer(email=f"a.ngata{i}@kowhai.nz", name="Aroha Ngatta",
                                       currency="nzd")  # fmt: skip
    h.deliver_stripe()
    page = h.http.get("/v1/match-candidates", params={"status": "open"}, headers=auth).json()
    assert len(page["data"]) == n
    return list(page["data"])


def test_a_possible_duplicate_is_listed_for_review(harness: Harness, auth: dict[str, str]) -> None:
    [candidate] = _queue(harness, auth)
    assert candidate["status"] == "open"
    assert candidate["system"] == "stripe"
    assert candidate["record"]["email"] == "a.ngata0@kowhai.nz"
    assert candidate["target"]["email"] == "aroha@kowhai.nz"
    assert candidate["evidence"]["name"] == "close"
    assert 0.6 <= candidate["score"] < 0.95
    one = harness.http.get(f"/v1/match-candidates/{candidate['id']}", headers=auth).json()
    assert one["id"] == candidate["id"]
    customers = harness.http.get("/v1/customers", headers=auth).json()["data"]
    assert len(customers) == 2  # the Stripe customer has its own record while it waits


def test_confirming_merges_once_per_key_and_is_audited(
    harness: Harness, auth: dict[str, str]
) -> None:
    [candidate] = _queue(harness, auth)
    url = f"/v1/match-candidates/{candidate['id']}/confirm"
    confirmed = harness.http.post(url, headers={**auth, "Idempotency-Key": "c-1"})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "confirmed"
    assert confirmed.json()["merge_id"].startswith("mrg_")
    replayed = harness.http.post(url, headers={**auth, "Idempotency-Key": "c-1"})
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == confirmed.json()
    again = harness.http.post(url, headers={**auth, "Idempotency-Key": "c-2"})
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["code"] == "conflict"
    survivor = harness.http.get(f"/v1/customers/{candidate['target_id']}", headers=auth).json()
    assert {"product", "stripe"} <= set(survivor["external_ids"])
    merged = harness.http.get(f"/v1/customers/{candidate['record_id']}", headers=auth).json()
    assert merged["deleted"] is True
    audit = harness.http.get("/v1/audit", params={"limit": 100}, headers=auth).json()["data"]
    assert {"match_candidate.confirm", "match_candidate.confirm.replayed"} <= {
        e["action"] for e in audit
    }
    harness.settle()  # the merge's events go through the outbox like any other
    assert harness.http.get("/v1/dead-letters", headers=auth).json()["data"] == []
    emails = {c["synchub_customer_id"]: c["email"] for c in harness.boxes.hubspot.contacts()}
    assert emails[candidate["target_id"]] == "a.ngata0@kowhai.nz"  # Stripe owns email


def test_rejecting_keeps_both_and_ends_the_candidate(
    harness: Harness, auth: dict[str, str]
) -> None:
    [candidate] = _queue(harness, auth)
    url = f"/v1/match-candidates/{candidate['id']}"
    rejected = harness.http.post(f"{url}/reject", headers=auth)
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "rejected"
    assert harness.http.post(f"{url}/confirm", headers=auth).status_code == 409
    open_now = harness.http.get("/v1/match-candidates", params={"status": "open"}, headers=auth)
    assert open_now.json()["data"] == []
    assert len(harness.http.get("/v1/customers", headers=auth).json()["data"]) == 2


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/match-candidates/mc_nope"),
        ("POST", "/v1/match-candidates/mc_nope/confirm"),
        ("POST", "/v1/match-candidates/mc_nope/reject"),
    ],
)
def test_unknown_candidates_are_404_problems(
    harness: Harness, auth: dict[str, str], method: str, path: str
) -> None:
    reply = harness.http.request(method, path, headers=auth)
    assert reply.status_code == 404
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["code"] == "not_found"
    assert reply.json()["type"].endswith("/not-found")


def test_a_bad_status_filter_is_422(harness: Harness, auth: dict[str, str]) -> None:
    reply = harness.http.get("/v1/match-candidates", params={"status": "maybe"}, headers=auth)
    assert reply.status_code == 422
    assert reply.json()["errors"][0]["pointer"] == "/status"


def test_lists_are_cursor_pages(harness: Harness, auth: dict[str, str]) -> None:
    _queue(harness, auth, n=3)
    first = harness.http.get("/v1/match-candidates", params={"limit": 2}, headers=auth).json()
    assert first["has_more"] is True
    rest = harness.http.get(
        "/v1/match-candidates",
        headers=auth,
        params={"limit": 2, "starting_after": first["next_starting_after"]},
    )
    ids = [c["id"] for c in first["data"] + rest.json()["data"]]  # fmt: skip
    assert len(set(ids)) == 3
    assert ids == sorted(ids)


def test_deciding_needs_admin_matches_and_reading_needs_read_matches(
    harness: Harness, auth: dict[str, str]
) -> None:
    [candidate] = _queue(harness, auth)
    reader = _bearer(harness, scopes="read:matches")
    writer = _bearer(harness, scopes="read:customers write:customers")
    confirm = f"/v1/match-candidates/{candidate['id']}/confirm"
    assert harness.http.post(confirm, headers=reader).status_code == 403
    assert harness.http.get("/v1/match-candidates", headers=writer).status_code == 403
    assert harness.http.get("/v1/match-candidates", headers=reader).status_code == 200


def test_another_workspace_sees_no_candidates(harness: Harness, auth: dict[str, str]) -> None:
    [candidate] = _queue(harness, auth)
    other = _bearer(harness, workspace="sandbox-acme")
    assert harness.http.get("/v1/match-candidates", headers=other).json()["data"] == []
    url = f"/v1/match-candidates/{candidate['id']}"
    assert harness.http.get(url, headers=other).status_code == 404
    assert harness.http.post(f"{url}/confirm", headers=other).status_code == 404
