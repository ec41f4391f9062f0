"""What reaches us before the route runs: authentication first, fair use on every answer past
it, one Authorization header, fixed signature details, and text no store can keep refused at
intake (review of issue 7)."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from synchub.connectors.hubspot.webhooks import signature_v3
from synchub.connectors.stripe.webhooks import sign_header
from synchub.core.clock import FixedClock
from synchub.core.jsontext import unstorable_strings
from synchub.db import Database
from synchub.ingest.store import inbox_events
from tests.conftest import REPO
from tests.harness import Harness, make_harness
from tests.logs import captured_logs

PLANS = """plans:
  default: {rate: 3, period_seconds: 60, burst: 3, monthly_quota: 1000,
            token: {rate: 60, period_seconds: 60, burst: 20}}
client_plans: {}
"""
EVENT = json.loads((REPO / "tests/data/stripe/events/customer.created.json").read_text())
HOOK = "http://testserver/v1/webhooks/hubspot"
TOO_BIG = 1024 * 1024 + 1


@pytest.fixture
def tight(db: Database, tmp_path: Path) -> Iterator[tuple[Harness, dict[str, str]]]:
    """A hub whose clients may make 3 calls a minute, and a token holding the write scopes."""
    register = tmp_path / "register"
    shutil.copytree(REPO / "register", register)
    (register / "plans.yaml").write_text(PLANS)
    clock = FixedClock(datetime(2026, 12, 3, 1, 0, tzinfo=UTC))
    harness = make_harness(db, clock, data_dir=tmp_path, register_dir=register)
    with db.write() as conn:
        client_id, secret = harness.hub.auth.create_client(
            conn, name="t", scopes=["read:customers", "write:customers"], workspace="live",
            actor="test",
        )  # fmt: skip
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    token = harness.http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    ).json()["access_token"]
    yield harness, {"Authorization": f"Bearer {token}"}
    harness.worker.stop()
    harness.http.close()


def _chunks(size: int) -> Iterator[bytes]:
    """A body sent without Content-Length (chunked)."""
    for _ in range(size // 65536):
        yield b"x" * 65536
    yield b"x" * (size % 65536)


BAD_BODIES: dict[str, Any] = {
    "malformed JSON": lambda: b"{",
    "declared oversized": lambda: b"x" * TOO_BIG,
    "streamed oversized": lambda: _chunks(TOO_BIG),
}
EXPECTED = {"malformed JSON": 400, "declared oversized": 413, "streamed oversized": 413}


def _post_customer(h: Harness, auth: dict[str, str], body: Any) -> Any:
    headers = {**auth, "Content-Type": "application/json"}
    return h.http.post("/v1/customers", content=body, headers=headers)


# -- 2: authentication first, then fair use, then the body -------------------------------------


@pytest.mark.parametrize("kind", sorted(BAD_BODIES))
def test_a_bad_token_is_401_whatever_the_body(
    tight: tuple[Harness, dict[str, str]], kind: str
) -> None:
    harness, _ = tight
    reply = _post_customer(harness, {"Authorization": "Bearer garbage"}, BAD_BODIES[kind]())
    assert reply.status_code == 401, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert "RateLimit" not in reply.headers  # nobody to count it against


@pytest.mark.parametrize("kind", sorted(BAD_BODIES))
def test_a_bad_body_from_a_client_is_counted_and_says_how_much_room_is_left(
    tight: tuple[Harness, dict[str, str]], kind: str
) -> None:
    harness, auth = tight
    replies = [_post_customer(harness, auth, BAD_BODIES[kind]()) for _ in range(3)]
    assert [r.status_code for r in replies] == [EXPECTED[kind]] * 3
    for reply, remaining in zip(replies, (2, 1, 0), strict=True):
        assert reply.headers["content-type"] == "application/problem+json"
        assert reply.headers["RateLimit"].startswith(f'"default";r={remaining};')
        assert "RateLimit-Policy" in reply.headers
    throttled = _post_customer(harness, auth, BAD_BODIES[kind]())
    assert throttled.status_code == 429
    assert throttled.json()["layer"] == "throttle"
    assert int(throttled.headers["Retry-After"]) >= 1


def test_an_invalid_body_and_an_unknown_path_carry_the_ratelimit_fields(
    tight: tuple[Harness, dict[str, str]],
) -> None:
    harness, auth = tight
    invalid = harness.http.post("/v1/customers", json={"bogus": 1}, headers=auth)
    assert invalid.status_code == 422
    assert invalid.headers["RateLimit"].startswith('"default";r=2;')
    unknown = harness.http.get("/v1/no-such-thing", headers=auth)
    assert unknown.status_code == 404
    assert unknown.headers["RateLimit"].startswith('"default";r=1;')
    assert harness.http.get("/v1/no-such-thing", headers={"Authorization": "Bearer x"}
                            ).status_code == 401  # fmt: skip


# -- 5: one Authorization header ---------------------------------------------------------------


@pytest.mark.parametrize("second", ["same", "Bearer other", "Basic Zm9vOmJhcg=="])
def test_two_authorization_headers_are_400_invalid_request(
    tight: tuple[Harness, dict[str, str]], second: str
) -> None:
    harness, auth = tight
    first = auth["Authorization"]
    headers = [("Authorization", first), ("Authorization", first if second == "same" else second)]
    reply = harness.http.get("/v1/customers", headers=headers)
    assert reply.status_code == 400, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["code"] == "invalid_request"
    assert 'error="invalid_request"' in reply.headers["WWW-Authenticate"]
    assert harness.http.get("/v1/customers", headers=auth).status_code == 200


# -- 3: a fixed detail for every signature failure ---------------------------------------------


def _stripe(h: Harness, body: bytes, signature: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return h.http.post("/v1/webhooks/stripe", content=body, headers=headers)


def _stored(h: Harness) -> int:
    with h.hub.db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(inbox_events)).scalar())


def test_every_signature_failure_gets_the_same_detail_and_the_reason_is_logged(
    harness: Harness,
) -> None:
    body = json.dumps(EVENT).encode()
    now = int(harness.clock.now().timestamp())
    secret = harness.hub.webhook_secrets["stripe"][0]
    good = sign_header(body, secret=secret, timestamp=now)
    cases = {
        "missing": None,
        "stale": sign_header(body, secret=secret, timestamp=now - 301),
        "future": sign_header(body, secret=secret, timestamp=now + 301),
        "tampered": good.replace("v1=", "v1=0"),
        "no v1": f"t={now},v0=abc",
        "two t": good + f",t={now}",
        "wrong secret": sign_header(body, secret="whsec_other", timestamp=now),
    }
    with captured_logs() as logs:
        replies = {name: _stripe(harness, body, header) for name, header in cases.items()}
    details = {name: (r.status_code, r.json()["code"], r.json()["detail"])
               for name, r in replies.items()}  # fmt: skip
    assert set(details.values()) == {
        (400, "invalid_signature", "The webhook signature does not verify.")
    }, details
    reasons = [e.get("reason") for e in logs if e.get("code") == "invalid_signature"]
    assert len(reasons) == len(cases)
    assert "timestamp outside the tolerance window" in reasons
    assert all(reason and secret not in reason and good not in reason for reason in reasons)
    assert all(e["log_level"] == "info" for e in logs if e.get("code") == "invalid_signature")
    assert _stored(harness) == 0


# -- 4: text no store can keep -----------------------------------------------------------------


def _event(name_field: str, value: object) -> dict[str, Any]:
    event = json.loads(json.dumps(EVENT))
    event["id"] = "evt_badtext1"
    event["data"]["object"][name_field] = value
    return event


@pytest.mark.parametrize(
    ("event", "pointer"),
    [
        (_event("name", "Nul\u0000Name"), "/data/object/name"),
        (_event("name", "lone \ud800"), "/data/object/name"),
        (_event("metadata", {"a/b~c": ["ok", "x\udc00"]}), "/data/object/metadata/a~1b~0c/1"),
        (_event("metadata", {"key\u0000": "v"}), "/data/object/metadata"),
    ],
)
def test_a_signed_stripe_event_with_unstorable_text_is_422_and_nothing_is_stored(
    harness: Harness, event: dict[str, Any], pointer: str
) -> None:
    body = json.dumps(event).encode()  # ASCII: \u0000 and \ud800 are JSON escapes
    reply = harness.post_event(body)
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert [e["pointer"] for e in reply.json()["errors"]] == [pointer]
    assert _stored(harness) == 0
    harness.settle()  # nothing left to crash in the inbox
    assert _stored(harness) == 0


def _hubspot(h: Harness, events: list[dict[str, Any]]) -> Any:
    body = json.dumps(events).encode()
    stamp = str(int(h.clock.now().timestamp() * 1000))
    signature = signature_v3(h.boxes.hubspot.client_secret, method="POST", uri=HOOK, body=body,
                             timestamp=stamp)  # fmt: skip
    headers = {"Content-Type": "application/json", "X-HubSpot-Signature-v3": signature,
               "X-HubSpot-Request-Timestamp": stamp}  # fmt: skip
    return h.http.post(HOOK, content=body, headers=headers)


@pytest.mark.parametrize(
    ("bad", "pointer"),
    [({"eventId": "9\u0000"}, "/1/eventId"), ({"propertyValue": "\ud800"}, "/1/propertyValue")],
)
def test_a_signed_hubspot_batch_with_unstorable_text_is_422_and_nothing_is_stored(
    harness: Harness, bad: dict[str, str], pointer: str
) -> None:
    fine = {"eventId": 1, "subscriptionType": "contact.propertyChange", "objectId": 5}
    reply = _hubspot(harness, [fine, {**fine, "eventId": 2, **bad}])
    assert reply.status_code == 422, reply.text
    assert [e["pointer"] for e in reply.json()["errors"]] == [pointer]
    assert _stored(harness) == 0
    assert _hubspot(harness, [fine]).status_code == 200  # the same intake takes good text


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        (b'{"external_id": "c1", "name": "a\\u0000b"}', "/name"),
        (b'{"external_id": "c1", "name": "a\\ud800b"}', "/name"),
        (b'{"external_id": "c\\u0000", "name": "x"}', "/external_id"),
    ],
)
def test_a_product_write_with_unstorable_text_is_422_naming_the_field(
    tight: tuple[Harness, dict[str, str]], body: bytes, pointer: str
) -> None:
    harness, auth = tight
    reply = _post_customer(harness, {**auth, "Idempotency-Key": "k1"}, body)
    assert reply.status_code == 422, reply.text
    assert pointer in [e["pointer"] for e in reply.json()["errors"]]
    assert harness.http.get("/v1/customers", headers=auth).json()["data"] == []


def test_unstorable_strings_walks_deep_documents_and_escapes_pointers() -> None:
    deep: Any = "\u0000"
    for _ in range(5000):
        deep = [deep]
    assert [p.pointer for p in unstorable_strings(deep)] == ["/0" * 5000]
    assert unstorable_strings({"a": ["fine", "\U0001f600", {"b": 1.5}]}) == []
    many = unstorable_strings({str(i): "\u0000" for i in range(50)})
    assert [p.pointer for p in many] == [f"/{i}" for i in range(10)]
