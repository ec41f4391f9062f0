"""A standalone Stripe refund (its own `refund.*` event: the object names its charge, not the
charge's customer) belongs to the charge's customer, so its events are delivered in order
with that customer's (the aggregate, `changes.aggregate_of`)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from synchub.core.clock import FixedClock
from synchub.db import Database
from synchub.events.store import outbox_events
from synchub.mapping.catalogue import load_mappings
from synchub.mapping.model import Observation, map_object
from synchub.mdm import service, store
from tests.integration.test_matching import AT, NO_OWNERS, context

DATA = Path(__file__).parents[1] / "data" / "stripe"
STRIPE = load_mappings()["stripe"]["stripe.v1"]


def _stripe(object_type: str, obj: dict[str, Any], version: int) -> list[Observation]:
    return map_object(STRIPE, object_type, obj, source_version=version, observed_at=AT)


def _apply(db: Database, clock: FixedClock, observations: list[Observation]) -> list[str]:
    with db.write() as conn:
        return [
            service.apply_observation(conn, obs, context(clock), owner_of=NO_OWNERS).canonical_id
            or ""
            for obs in observations
        ]


def _charge(customer: str | None) -> dict[str, Any]:
    charge = json.loads((DATA / "objects-2026-10-28.json").read_text())["charge"]
    return {**charge, "customer": customer, "refunds": None}


def _standalone_refund() -> dict[str, Any]:
    refund = json.loads((DATA / "refund-2026-10-28.json").read_text())
    assert refund["customer"] is None  # as Stripe sends it: the charge, no customer
    return copy.deepcopy(refund)


def _events(db: Database, subject: str) -> list[tuple[str, str, str]]:
    with db.read() as conn:
        rows = conn.execute(
            sa.select(outbox_events.c.type, outbox_events.c.aggregate_type,
                      outbox_events.c.aggregate_id)
            .where(outbox_events.c.subject == subject)
            .order_by(outbox_events.c.id)
        )  # fmt: skip
        return [tuple(r) for r in rows]


def test_a_standalone_refund_takes_its_payments_customer_and_is_ordered_with_them(
    sqlite_db: Database, clock: FixedClock
) -> None:
    customer = {"id": "cus_R1", "object": "customer", "email": "r@fund.nz", "name": "Refund Me"}
    [customer_id] = _apply(sqlite_db, clock, _stripe("customer", customer, 1_000))
    [payment_id] = _apply(sqlite_db, clock, _stripe("charge", _charge("cus_R1"), 2_000))
    [refund_obs] = _stripe("refund", _standalone_refund(), 3_000)
    assert "customer_id" not in refund_obs.refs  # the mapping cannot see a customer
    [refund_id] = _apply(sqlite_db, clock, [refund_obs])

    with sqlite_db.read() as conn:
        refund = store.get_golden(conn, "refund", refund_id) or {}
        payment = store.get_golden(conn, "payment", payment_id) or {}
    assert payment["customer_id"] == customer_id
    assert (refund["payment_id"], refund["customer_id"]) == (payment_id, customer_id)
    assert _events(sqlite_db, refund_id) == [("refund.created", "customer", customer_id)]

    # A later event about the same refund keeps it with the customer.
    changed = {**_standalone_refund(), "status": "failed"}
    _apply(sqlite_db, clock, _stripe("refund", changed, 4_000))
    assert _events(sqlite_db, refund_id)[-1] == ("refund.updated", "customer", customer_id)


def test_a_refund_of_a_guest_charge_stays_its_own_aggregate(
    sqlite_db: Database, clock: FixedClock
) -> None:
    [payment_id] = _apply(sqlite_db, clock, _stripe("charge", _charge(None), 2_000))
    [refund_id] = _apply(sqlite_db, clock, _stripe("refund", _standalone_refund(), 3_000))
    with sqlite_db.read() as conn:
        refund = store.get_golden(conn, "refund", refund_id) or {}
    assert (refund["payment_id"], refund["customer_id"]) == (payment_id, None)
    assert _events(sqlite_db, refund_id) == [("refund.created", "refund", refund_id)]
