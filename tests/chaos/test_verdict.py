"""The chaos verdict itself: it passes a clean run and names each kind of failure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from synchub.bootstrap import load_checked_register
from synchub.config import Settings
from synchub.db import Database
from synchub.events.store import deliveries, outbox_events
from synchub.register.model import Register
from tests.chaos.verdict import judge
from tests.conftest import REPO

AT = datetime(2026, 12, 3, tzinfo=UTC)
CUSTOMER = "cus_01CHAOSVERDICT0000000000"
TRACE = {n: f"00-{n:032x}-{n:016x}-01" for n in (1, 2)}


@pytest.fixture
def register() -> Register:
    """The repo's register: customer events go to HubSpot and Xero."""
    return load_checked_register(Settings(register_dir=REPO / "register"))[0]


def _event(db: Database, n: int, event_type: str, *, status: str = "succeeded") -> None:
    with db.write() as conn:
        key = conn.execute(
            sa.insert(outbox_events).values(
                id=f"evt_{n}",
                workspace="live",
                type=event_type,
                source="/synchub/live/stripe",
                subject=CUSTOMER,
                aggregate_type="customer",
                aggregate_id=CUSTOMER,
                dataschema="x",
                payload={},
                traceparent=TRACE[n],
                app_version="t",
                created_at=AT,
            )
        ).inserted_primary_key
        assert key is not None
        seq = key[0]
        for destination in ("hubspot", "xero"):
            conn.execute(
                sa.insert(deliveries).values(
                    id=f"d_{n}_{destination}",
                    workspace="live",
                    event_id=f"evt_{n}",
                    event_seq=seq,
                    event_type=event_type,
                    destination=destination,
                    aggregate_id=CUSTOMER,
                    status=status,
                    attempts=1,
                    next_attempt_at=AT,
                    idempotency_key=f"k{n}",
                    created_at=AT,
                )
            )


def _write(n: int, trace: int, *, created: bool = False, key: str = CUSTOMER) -> dict[str, Any]:
    return {
        "n": n,
        "method": "POST",
        "path": "/api.xro/2.0/Contacts",
        "entity": "Contacts/x",
        "key": key,
        "created": created,
        "idempotency_key": None,
        "traceparent": TRACE[trace],
    }


def _state(xero: list[dict[str, Any]]) -> dict[str, Any]:
    hubspot = [{**_write(1, 1, created=True, key="email=a@b.nz"), "entity": "contacts/1"}]
    return {
        "vendors": {
            "hubspot": {"journal": hubspot},
            "xero": {"journal": xero},
            "product": {"journal": []},
            "stripe": {"journal": []},
        },
        "hubspot": {"contacts": {}, "companies": {}},
        "xero": {"contacts": [], "invoices": [], "payments": []},
    }


def test_a_run_in_order_without_duplicates_passes(sqlite_db: Database, register: Register) -> None:
    _event(sqlite_db, 1, "customer.created")
    _event(sqlite_db, 2, "customer.updated")
    xero = [_write(1, 1, created=True), _write(2, 1), _write(3, 2)]  # a repeat of 1 is fine
    assert judge(sqlite_db, register, _state(xero)).problems == []


def test_an_earlier_change_applied_after_a_later_one_breaks_order(
    sqlite_db: Database, register: Register
) -> None:
    _event(sqlite_db, 1, "customer.created")
    _event(sqlite_db, 2, "customer.updated")
    xero = [_write(1, 1, created=True), _write(2, 2), _write(3, 1)]
    [problem] = judge(sqlite_db, register, _state(xero)).problems
    assert problem.startswith(f"xero: order broken for {CUSTOMER}: write #3")


def test_a_second_create_for_one_key_is_a_duplicate(
    sqlite_db: Database, register: Register
) -> None:
    _event(sqlite_db, 1, "customer.created")
    xero = [_write(1, 1, created=True), _write(2, 1, created=True)]
    assert judge(sqlite_db, register, _state(xero)).problems == [
        f"xero created 2 Contacts for {CUSTOMER}"
    ]


def test_deliveries_not_succeeded_and_writes_no_event_explains_are_named(
    sqlite_db: Database, register: Register
) -> None:
    _event(sqlite_db, 1, "customer.created", status="in_flight")
    xero = [_write(1, 1, created=True), {**_write(2, 2), "traceparent": None}]
    problems = judge(sqlite_db, register, _state(xero)).problems
    assert any("to xero is in_flight" in p for p in problems)
    assert any("to hubspot is in_flight" in p for p in problems)
    assert any("write #2" in p and "matches no event" in p for p in problems)
