"""The /v1 API as a partner meets it: tokens, scopes, pages, idempotent writes, workspaces."""

from __future__ import annotations

import base64
import threading
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from synchub.audit.service import verify_chain
from synchub.auth.model import SCOPES
from synchub.mdm.store import GOLDEN
from tests.conftest import REPO
from tests.harness import Harness

ALL = " ".join(SCOPES)


def _client(h: Harness, *, scopes: str = ALL, workspace: str = "live") -> tuple[str, str]:
    assert h.hub.auth is not None
    with h.hub.db.write() as conn:
        return h.hub.auth.create_client(
            conn, name="partner", scopes=scopes.split(), workspace=workspace, actor="test"
        )


def _token(h: Harness, client: tuple[str, str], scope: str | None = None) -> dict[str, str]:
    basic = base64.b64encode(f"{client[0]}:{client[1]}".encode()).decode()
    form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    reply = h.http.post("/oauth/token", data=form, headers={"Authorization": f"Basic {basic}"})
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


@pytest.fixture
def auth(harness: Harness) -> dict[str, str]:
    """A bearer header for a live-workspace client holding every scope."""
    return _token(harness, _client(harness))


def _create(h: Harness, auth: dict[str, str], key: str | None = None, **body: Any) -> Any:
    headers = {**auth, **({"Idempotency-Key": key} if key else {})}
    payload = {"external_id": "prod-1", "email": "aroha@kowhai.nz", "name": "Aroha Ngāta", **body}
    return h.http.post("/v1/customers", json=payload, headers=headers)


def _stripe_holds_it(h: Harness) -> None:
    """Stripe, the owner of customer emails, gets a record linked to the product's customer
    (by its email): from then on only Stripe changes the email."""
    h.boxes.stripe.create_customer(email="aroha@kowhai.nz", name="Aroha Ngāta", currency="nzd")
    h.deliver_stripe()


def test_a_partner_creates_and_reads_a_customer(harness: Harness, auth: dict[str, str]) -> None:
    created = _create(harness, auth, key="k1")
    assert created.status_code == 201, created.text
    customer = created.json()
    assert customer["id"].startswith("cus_")
    assert customer["name"] == "Aroha Ngāta"
    assert customer["external_ids"] == {"product": "prod-1"}
    assert created.headers["X-Request-Id"] == customer["request_id"]
    got = harness.http.get(f"/v1/customers/{customer['id']}", headers=auth)
    assert got.json()["email"] == "aroha@kowhai.nz"
    harness.settle()  # the write produced canonical events and deliveries like any other
    assert harness.boxes.hubspot.contacts()[0]["email"] == "aroha@kowhai.nz"


def test_lists_are_cursor_pages_in_a_stable_order(harness: Harness, auth: dict[str, str]) -> None:
    for n in range(5):
        assert _create(harness, auth, external_id=f"p{n}", email=f"p{n}@x.nz").status_code == 201
    seen, after = [], None
    while True:
        params = {"limit": 2, **({"starting_after": after} if after else {})}
        page = harness.http.get("/v1/customers", params=params, headers=auth).json()
        seen += [c["id"] for c in page["data"]]
        if not page["has_more"]:
            break
        after = page["next_starting_after"]
    assert len(seen) == 5
    assert seen == sorted(seen)
    assert harness.http.get("/v1/customers", params={"limit": 0}, headers=auth).status_code == 422


def test_a_repeated_key_replays_and_a_changed_body_is_refused(
    harness: Harness, auth: dict[str, str]
) -> None:
    first = _create(harness, auth, key="same")
    again = _create(harness, auth, key="same")
    assert again.status_code == first.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    changed = _create(harness, auth, key="same", name="Someone Else")
    assert changed.status_code == 422
    assert changed.json()["code"] == "idempotency_key_reused"
    quoted = _create(harness, auth, key='"same"')  # an RFC 8941 sf-string is the same key
    assert quoted.headers.get("Idempotent-Replayed") == "true"


@pytest.mark.parametrize("header", ["", "has space", "a/b", "x" * 256, '"unterminated'])
def test_malformed_keys_are_400(harness: Harness, auth: dict[str, str], header: str) -> None:
    reply = harness.http.post(
        "/v1/customers", json={"external_id": "x"}, headers={**auth, "Idempotency-Key": header}
    )
    assert reply.status_code == 400
    assert reply.json()["code"] == "invalid_idempotency_key"


def test_two_key_headers_are_400(harness: Harness, auth: dict[str, str]) -> None:
    reply = harness.http.post(
        "/v1/customers",
        json={"external_id": "x"},
        headers=[*auth.items(), ("Idempotency-Key", "a"), ("Idempotency-Key", "b")],
    )
    assert reply.status_code == 400


def test_a_failed_write_keeps_no_key_so_the_client_can_retry(
    harness: Harness, auth: dict[str, str]
) -> None:
    customer = _create(harness, auth).json()
    _stripe_holds_it(harness)
    refused = harness.http.patch(
        f"/v1/customers/{customer['id']}",
        json={"email": "n@x.nz"},
        headers={**auth, "Idempotency-Key": "patch-1"},
    )
    assert refused.status_code == 422
    assert refused.json()["errors"] == [
        {"pointer": "/email", "detail": "customer.email is owned by stripe; change it there"}
    ]
    fixed = harness.http.patch(
        f"/v1/customers/{customer['id']}",
        json={"name": "Aroha N."},
        headers={**auth, "Idempotency-Key": "patch-1"},
    )
    assert fixed.status_code == 200
    assert fixed.json()["name"] == "Aroha N."


def test_concurrent_requests_with_one_key_execute_once(
    harness: Harness, auth: dict[str, str]
) -> None:
    replies: list[int] = []

    def post() -> None:
        replies.append(_create(harness, auth, key="race").status_code)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with harness.hub.db.read() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(GOLDEN["customer"])).scalar()
        created = conn.execute(
            sa.text("SELECT count(*) FROM outbox_events WHERE type = 'customer.created'")
        ).scalar()
    assert count == 1
    assert created == 1
    assert set(replies) <= {201, 409}
    assert 201 in replies


def test_no_token_or_a_bad_token_is_401_with_a_challenge(harness: Harness) -> None:
    missing = harness.http.get("/v1/customers")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.headers["content-type"] == "application/problem+json"
    bad = harness.http.get("/v1/customers", headers={"Authorization": "Bearer not.a.jwt"})
    assert bad.status_code == 401
    assert 'error="invalid_token"' in bad.headers["WWW-Authenticate"]


def _operations() -> list[tuple[str, str, str]]:
    spec = yaml.safe_load((REPO / "openapi/v1.yaml").read_text())
    ops = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            [requirement] = op["security"]
            [scope] = requirement["oauth2"]
            ops.append((method.upper(), path, scope))
    return ops


def test_every_operation_declares_exactly_one_known_scope() -> None:
    operations = _operations()
    assert len(operations) >= 25
    assert {scope for _, _, scope in operations} <= set(SCOPES)


def test_scope_matrix_every_operation_refuses_every_other_scope(harness: Harness) -> None:
    # One client per scope: token requests are rate limited per client id.
    tokens = {scope: _token(harness, _client(harness), scope) for scope in SCOPES}
    outcomes: Counter[str] = Counter()
    for method, path, needed in _operations():
        url = (
            path.replace("{record_id}", "cus_none")
            .replace("{event_id}", "evt_none")
            .replace("{delivery_id}", "dlv_none")
            .replace("{name}", "xero")
        )
        for scope, headers in tokens.items():
            reply = harness.http.request(
                method, url, headers=headers, json={} if method in ("POST", "PATCH") else None
            )
            if scope == needed:
                assert reply.status_code not in (401, 403), (method, path, reply.text)
                outcomes["allowed"] += 1
            else:
                assert reply.status_code == 403, (method, path, scope, reply.status_code)
                assert reply.json()["code"] == "insufficient_scope"
                outcomes["refused"] += 1
    assert outcomes["allowed"] == len(_operations())


def test_another_workspace_cannot_see_or_touch_live_records(
    harness: Harness, auth: dict[str, str]
) -> None:
    customer = _create(harness, auth).json()
    harness.settle()
    sandbox = _token(harness, _client(harness, workspace="sandbox-acme"))
    assert harness.http.get(f"/v1/customers/{customer['id']}", headers=sandbox).status_code == 404
    assert harness.http.get("/v1/customers", headers=sandbox).json()["data"] == []
    assert (
        harness.http.patch(
            f"/v1/customers/{customer['id']}", json={"name": "x"}, headers=sandbox
        ).status_code
        == 404
    )
    events = harness.http.get("/v1/events", headers=auth).json()["data"]
    assert events
    assert harness.http.get(f"/v1/events/{events[0]['id']}", headers=sandbox).status_code == 404
    deliveries = harness.http.get("/v1/deliveries", headers=auth).json()["data"]
    assert deliveries
    replay = harness.http.post(f"/v1/deliveries/{deliveries[0]['id']}/replay", headers=sandbox)
    assert replay.status_code == 404
    assert harness.http.get("/v1/audit", headers=sandbox).json()["data"] == [] or all(
        e["workspace"] == "sandbox-acme"
        for e in harness.http.get("/v1/audit", headers=sandbox).json()["data"]
    )


def test_dead_letters_are_listed_and_replayed_with_their_key(
    harness: Harness, auth: dict[str, str]
) -> None:
    harness.boxes.xero.seed_contact("Kiwi Cafe Ltd")
    harness.boxes.stripe.create_customer(
        email="t@kiwi.nz", name="Tom", currency="nzd", metadata={"company": "Kiwi Cafe Ltd"}
    )
    harness.deliver_stripe()
    [dead] = harness.http.get("/v1/dead-letters", headers=auth).json()["data"]
    detail = harness.http.get(f"/v1/dead-letters/{dead['id']}", headers=auth).json()
    assert detail["attempt_history"][0]["outcome"] == "dead"
    harness.boxes.xero.contacts.clear()  # someone renamed the hand-made contact
    replay = harness.http.post(
        "/v1/dead-letters/replay",
        json={"destination": "xero"},
        headers={**auth, "Idempotency-Key": "replay-1"},
    )
    assert replay.json()["count"] == 1
    harness.settle()
    assert (
        harness.http.get(f"/v1/deliveries/{dead['id']}", headers=auth).json()["status"]
        == "succeeded"
    )
    assert harness.http.post("/v1/dead-letters/replay", json={}, headers=auth).status_code == 422


def test_writes_and_grants_are_in_the_audit_log(harness: Harness, auth: dict[str, str]) -> None:
    _create(harness, auth, key="audited")
    entries = harness.http.get("/v1/audit", headers=auth, params={"limit": 100}).json()["data"]
    actions = {e["action"] for e in entries}
    assert {"customer.create"} <= actions
    with harness.hub.db.read() as conn:
        assert verify_chain(conn, key=harness.hub.audit_key) == []


def test_connections_report_their_deliveries(harness: Harness, auth: dict[str, str]) -> None:
    harness.boxes.stripe.create_customer(email="c@b.nz", name="C", currency="nzd")
    harness.deliver_stripe()
    connections = {
        c["name"]: c for c in harness.http.get("/v1/connections", headers=auth).json()["data"]
    }
    assert connections["hubspot"]["deliveries"] == {"succeeded": 1}
    assert harness.http.get("/v1/connections/nope", headers=auth).status_code == 404


def test_a_sandbox_workspace_never_reaches_the_live_destinations(
    harness: Harness, auth: dict[str, str]
) -> None:
    sandbox = _token(harness, _client(harness, workspace="sandbox-acme"))
    assert _create(harness, sandbox, external_id="sb-1", email="sb@acme.test").status_code == 201
    harness.settle()
    assert harness.boxes.hubspot.contacts() == []  # the register's HubSpot saw nothing
    boxes, _ = harness.hub.workspace_sandboxes["sandbox-acme"]
    assert [c["email"] for c in boxes.hubspot.contacts()] == ["sb@acme.test"]


def test_an_upsert_may_not_change_a_field_another_system_owns(
    harness: Harness, auth: dict[str, str]
) -> None:
    assert _create(harness, auth).status_code == 201
    _stripe_holds_it(harness)
    again = _create(harness, auth, email="changed@kowhai.nz")  # same product id: an update
    assert again.status_code == 422
    assert again.json()["code"] == "field_owned_elsewhere"
    same = _create(harness, auth, name="Aroha")  # same email, other fields: allowed
    assert same.status_code == 200


def test_a_new_product_id_never_takes_over_another_product_record(
    harness: Harness, auth: dict[str, str]
) -> None:
    first = _create(harness, auth).json()
    other = _create(harness, auth, external_id="prod-2", name="Someone Else")
    assert other.status_code == 201
    assert other.json()["id"] != first["id"]
    kept = harness.http.get(f"/v1/customers/{first['id']}", headers=auth).json()
    assert kept["name"] == "Aroha Ngāta"
    assert kept["external_ids"] == {"product": "prod-1"}


def test_every_error_carries_a_trace_id(harness: Harness) -> None:
    assert harness.http.get("/v1/customers").json()["trace_id"]


def test_bodies_over_the_limit_are_413(harness: Harness, auth: dict[str, str]) -> None:
    reply = harness.http.post(
        "/v1/customers",
        content=b"{" + b" " * (1024 * 1024) + b"}",
        headers={**auth, "Content-Type": "application/json"},
    )
    assert reply.status_code == 413


@pytest.mark.parametrize(
    "query",
    ["updated_since=2026-01-01T00:00:00", "updated_since=2026-01-01", "starting_after=cus_%00"],
)
def test_odd_queries_are_4xx_not_500(harness: Harness, auth: dict[str, str], query: str) -> None:
    reply = harness.http.get(f"/v1/customers?{query}", headers=auth)
    assert reply.status_code in (400, 422)
    assert reply.headers["content-type"] == "application/problem+json"


def test_control_characters_in_bodies_are_422(harness: Harness, auth: dict[str, str]) -> None:
    assert _create(harness, auth, external_id="a\u0000b").status_code == 422
    assert _create(harness, auth, name="x\u0007").status_code == 422


def test_malformed_json_is_400_and_no_token_is_401_before_the_body(
    harness: Harness, auth: dict[str, str]
) -> None:
    bad = harness.http.post(
        "/v1/customers", content=b"{not json", headers={**auth, "Content-Type": "application/json"}
    )
    assert bad.status_code == 400
    anonymous = harness.http.post(
        "/v1/customers", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Bearer realm="synchub"'


def test_concurrent_creates_without_a_key_make_one_record(
    harness: Harness, auth: dict[str, str]
) -> None:
    replies: list[int] = []
    threads = [
        threading.Thread(target=lambda: replies.append(_create(harness, auth).status_code))
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(replies) == [200, 200, 200, 200, 200, 201]


def test_a_rewritten_audit_entry_is_detected(harness: Harness, auth: dict[str, str]) -> None:
    _create(harness, auth, key="k")
    with harness.hub.db.write() as conn:
        conn.execute(
            sa.text("UPDATE audit_log SET actor = 'someone-else' WHERE action = 'customer.create'")
        )
    with harness.hub.db.read() as conn:
        assert verify_chain(conn, key=harness.hub.audit_key) != []


def test_a_replay_is_audited(harness: Harness, auth: dict[str, str]) -> None:
    _create(harness, auth, key="r")
    _create(harness, auth, key="r")
    actions = [
        e["action"]
        for e in harness.http.get("/v1/audit", headers=auth, params={"limit": 100}).json()["data"]
    ]
    assert "customer.create.replayed" in actions
