"""POST /v1/webhooks/stripe: verified on raw bytes, committed before the 2xx, deduplicated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from synchub.ingest.store import inbox_events
from tests.harness import Harness

EVENTS = Path(__file__).resolve().parents[1] / "data" / "stripe" / "events"


def _inbox(h: Harness) -> list[dict[str, object]]:
    with h.hub.db.read() as conn:
        return [dict(r) for r in conn.execute(sa.select(inbox_events)).mappings()]


def test_a_good_event_is_committed_before_the_reply(harness: Harness) -> None:
    body = (EVENTS / "customer.created.json").read_bytes()
    reply = harness.post_event(body)
    assert reply.status_code == 200
    assert reply.json() == {
        "received": True,
        "id": "evt_1Pgc76B7WZ01zgkWcuCreat01",
        "duplicate": False,
    }
    [row] = _inbox(harness)
    assert row["body"] == body  # the raw bytes, exactly as received
    assert row["status"] == "pending"
    assert row["source"] == "stripe"
    assert row["traceparent"]


def test_the_same_event_again_is_acknowledged_and_not_processed_twice(harness: Harness) -> None:
    body = (EVENTS / "customer.created.json").read_bytes()
    assert harness.post_event(body).json()["duplicate"] is False
    harness.settle()
    second = harness.post_event(body)
    assert second.status_code == 200
    assert second.json()["duplicate"] is True
    harness.settle()
    assert len(_inbox(harness)) == 1
    with harness.hub.db.read() as conn:
        created = conn.execute(
            sa.text("SELECT count(*) FROM outbox_events WHERE type = 'customer.created'")
        ).scalar_one()
    assert created == 1


@pytest.mark.parametrize("case", ["wrong secret", "stale", "future", "tampered", "missing"])
def test_bad_signatures_get_400_problem_json_and_store_nothing(harness: Harness, case: str) -> None:
    body = (EVENTS / "invoice.paid.json").read_bytes()
    now = int(harness.clock.now().timestamp())
    if case == "wrong secret":
        reply = harness.post_event(body, secret="whsec_attacker")
    elif case == "stale":
        reply = harness.post_event(body, timestamp=now - 301)
    elif case == "future":
        reply = harness.post_event(body, timestamp=now + 301)
    elif case == "tampered":
        good = harness.post_event  # sign the original, send a changed body
        from synchub.connectors.stripe.webhooks import sign_header

        header = sign_header(body, secret=harness.hub.webhook_secrets["stripe"][0], timestamp=now)
        reply = harness.http.post(
            "/v1/webhooks/stripe",
            content=body.replace(b"1000", b"1"),
            headers={"Stripe-Signature": header},
        )
        assert good
    else:
        reply = harness.http.post("/v1/webhooks/stripe", content=body)
    assert reply.status_code == 400
    assert reply.headers["content-type"] == "application/problem+json"
    problem = reply.json()
    assert problem["type"] == "https://synchub.dev/problems/invalid-signature"
    assert problem["status"] == 400
    assert problem["code"] == "invalid_signature"
    assert "secret" not in json.dumps(problem).lower()
    assert _inbox(harness) == []


def test_a_signed_body_that_is_not_an_event_gets_422_with_pointers(harness: Harness) -> None:
    reply = harness.post_event(b'{"type": "customer.created", "created": "yesterday"}')
    assert reply.status_code == 422
    pointers = {e["pointer"] for e in reply.json()["errors"]}
    assert pointers == {"/id", "/created", "/data/object"}
    assert _inbox(harness) == []


def test_every_reply_carries_a_request_id(harness: Harness) -> None:
    reply = harness.http.get("/healthz")
    assert reply.headers["X-Request-Id"].startswith("req_")
    assert harness.http.get("/readyz").json()["status"] == "ready"
