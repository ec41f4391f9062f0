"""What review broke once: odd input, public secrets, far-future Retry-After, busy writers."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from synchub.bootstrap import build_hub
from synchub.config import Settings
from synchub.connectors.fault import Fault
from synchub.core.errors import ConfigError
from synchub.ingest.store import inbox_events
from synchub.mdm.store import GOLDEN
from tests.conftest import REPO
from tests.harness import Harness

EVENT = json.loads((REPO / "tests/data/stripe/events/customer.created.json").read_text())


def _stored(h: Harness) -> int:
    with h.hub.db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(inbox_events)).scalar())


@pytest.mark.parametrize(
    "change",
    [
        {"id": "evt_" + "x" * 300},
        {"id": "evt_\u0000nul"},
        {"id": "evt_\ud800"},
        {"type": "x" * 200 + ".created"},
        {"type": "Customer Created"},
        {"created": -1},
        {"created": 10**30},
        {"created": 1.5},
    ],
)
def test_odd_but_signed_events_are_422_and_store_nothing(
    harness: Harness, change: dict[str, object]
) -> None:
    body = json.dumps({**EVENT, **change}).encode("utf-8", "surrogatepass")
    reply = harness.post_event(body)
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert _stored(harness) == 0


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"id": ' + b"9" * 5000 + b"}"])
def test_pathological_json_is_422_not_500(harness: Harness, body: bytes) -> None:
    assert harness.post_event(body).status_code == 422


def test_an_absurd_signature_timestamp_is_400(harness: Harness) -> None:
    reply = harness.http.post(
        "/v1/webhooks/stripe",
        content=b"{}",
        headers={"Stripe-Signature": "t=" + "9" * 5000 + ",v1=00"},
    )
    assert reply.status_code == 400


def test_a_body_over_one_mebibyte_is_413_before_anything_else(harness: Harness) -> None:
    reply = harness.http.post(
        "/v1/webhooks/stripe",
        content=b"x" * (1024 * 1024 + 1),
        headers={"Stripe-Signature": "t=1,v1=00"},
    )
    assert reply.status_code == 413
    assert reply.json()["code"] == "payload_too_large"


def test_two_mailboxes_that_fold_alike_stay_two_customers(harness: Harness) -> None:
    stripe = harness.boxes.stripe
    stripe.create_customer(email="straße@example.de", name="Anna", currency="eur")
    stripe.create_customer(email="strasse@example.de", name="Bernd", currency="eur")
    harness.deliver_stripe()
    with harness.hub.db.read() as conn:
        emails = sorted(conn.execute(sa.select(GOLDEN["customer"].c.email)).scalars())
    assert emails == ["strasse@example.de", "straße@example.de"]


def test_an_uncollectible_invoice_can_still_be_paid(harness: Harness) -> None:
    stripe = harness.boxes.stripe
    customer = stripe.create_customer(email="u@b.nz", name="U", currency="nzd")
    invoice = stripe.create_invoice(customer["id"], currency="nzd", lines=[("Work", 1, 5000)])
    harness.deliver_stripe()
    stripe.advance(timedelta(days=30))
    invoice["status"] = "uncollectible"
    stripe._emit("invoice.marked_uncollectible", invoice)
    harness.deliver_stripe()
    stripe.advance(timedelta(days=1))
    stripe.pay_invoice(invoice["id"])
    harness.deliver_stripe()
    with harness.hub.db.read() as conn:
        [golden] = conn.execute(sa.select(GOLDEN["invoice"])).mappings().all()
    assert (golden["status"], golden["amount_paid_minor"]) == ("paid", 5000)


def test_a_far_future_retry_after_is_a_dead_letter_not_a_stall(harness: Harness) -> None:
    harness.boxes.hubspot.faults.add(Fault(status=429, headers={"Retry-After": "9999999"}))
    harness.boxes.stripe.create_customer(email="r@b.nz", name="R", currency="nzd")
    harness.deliver_stripe()
    assert harness.worker.is_idle()
    with harness.hub.db.read() as conn:
        dead = conn.execute(sa.text("SELECT dead_reason FROM deliveries WHERE status = 'dead'"))
        [reason] = dead.scalars().all()
    assert "past the destination's maximum age" in reason


def test_a_live_connection_will_not_start_on_the_public_dev_secret(tmp_path: Path) -> None:
    register = tmp_path / "register"
    register.mkdir()
    for source in (REPO / "register").glob("*.yaml"):
        (register / source.name).write_text(
            source.read_text().replace("mode: sandbox", "mode: live")
        )
    with pytest.raises(ConfigError) as info:
        build_hub(Settings(register_dir=register, data_dir=tmp_path))
    message = str(info.value)
    for variable in (
        "SYNCHUB_STRIPE_WEBHOOK_SECRET",
        "SYNCHUB_HUBSPOT_TOKEN",
        "SYNCHUB_XERO_TOKEN",
        "SYNCHUB_XERO_TENANT_ID",
        "SYNCHUB_PRODUCT_CALLBACK_SECRET",
    ):
        assert variable in message


def test_webhooks_still_land_while_the_writer_is_busy(harness: Harness) -> None:
    if not harness.hub.db.is_sqlite:
        pytest.skip("the writer lock exists only for SQLite")
    import threading

    holding, release = threading.Event(), threading.Event()

    def hold_writer() -> None:
        with harness.hub.db.write():
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold_writer)
    holder.start()
    holding.wait(5)
    timer = threading.Timer(0.3, release.set)
    timer.start()
    reply = harness.post_event(json.dumps(EVENT).encode())  # waits on a thread, not the loop
    holder.join()
    assert reply.status_code == 200
    assert _stored(harness) == 1
