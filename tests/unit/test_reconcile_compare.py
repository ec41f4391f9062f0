"""The pure comparison: ownership decides who is right, terminal states never move back,
money is compared in minor units, dates as calendar dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from synchub.core.entities import Kind
from synchub.mdm.reconcile import Action, View, compare, normalise, same

OWNERS = {("customer", "email"): "stripe", ("customer", "billing_status"): "stripe",
          ("subscription", "status"): "stripe", ("invoice", "status"): "stripe",
          ("invoice", "total_minor"): "stripe"}  # fmt: skip


def owner_of(entity: str, name: str) -> str | None:
    return OWNERS.get((entity, name))


CUSTOMER = {"id": "cus_1", "email": "aroha@kowhai.nz", "name": "Aroha Ngāta",
            "billing_status": "active"}  # fmt: skip


def _view(system: str, entity: str, fields: dict | None, **flags: bool) -> View:  # type: ignore[type-arg]
    return View(system, entity, "cus_1" if entity == "customer" else "in_1", "x1", fields,
                **flags)  # fmt: skip


def test_a_non_owner_that_differs_is_pushed_the_owners_value() -> None:
    view = _view("hubspot", "customer", {"billing_status": "canceled"}, can_push=True)
    [drift] = compare(CUSTOMER, view, owner_of=owner_of, provenance={}).drift
    assert (drift.field, drift.golden, drift.value) == ("billing_status", "active", "canceled")
    assert (drift.owner, drift.action) == ("stripe", Action.PUSH)


def test_without_a_flow_to_the_system_drift_is_only_reported() -> None:
    view = _view("hubspot", "customer", {"billing_status": "canceled"}, can_push=False)
    [drift] = compare(CUSTOMER, view, owner_of=owner_of, provenance={}).drift
    assert drift.action is Action.REPORT


def test_the_owner_differing_means_the_golden_record_is_behind() -> None:
    view = _view("stripe", "customer", {"email": "a@kowhai.nz"}, can_observe=True, can_push=True)
    [drift] = compare(CUSTOMER, view, owner_of=owner_of, provenance={}).drift
    assert (drift.owner, drift.action) == ("stripe", Action.OBSERVE)


def test_an_unowned_field_follows_its_provenance() -> None:
    view = _view("stripe", "customer", {"name": "Aroha Ngata-Smith"}, can_observe=True)
    prov = {"name": "stripe"}
    [behind] = compare(CUSTOMER, view, owner_of=owner_of, provenance=prov).drift
    assert behind.action is Action.OBSERVE
    hubspot = _view("hubspot", "customer", {"name": "A. Ngāta"}, can_push=True)
    [pushed] = compare(CUSTOMER, hubspot, owner_of=owner_of, provenance=prov).drift
    assert (pushed.owner, pushed.action) == ("stripe", Action.PUSH)


def test_equal_values_spelt_differently_are_no_drift() -> None:
    decomposed = "Aroha Nga\u0304ta"  # ā as a + combining macron
    view = _view("hubspot", "customer", {"email": " Aroha@Kowhai.NZ ", "name": decomposed,
                                         "phone": "", "billing_status": "active"},
                 can_push=True)  # fmt: skip
    assert compare(CUSTOMER, view, owner_of=owner_of, provenance={}).drift == []
    assert same("customer", "billing_status", None, "none")


def test_terminal_states_never_move_back() -> None:
    canceled = {"id": "in_1", "status": "paid", "total_minor": 4900, "currency": "NZD"}
    stale_owner = _view("stripe", "invoice", {"status": "open"}, can_observe=True)
    [drift] = compare(canceled, stale_owner, owner_of=owner_of, provenance={}).drift
    assert drift.action is Action.REPORT
    assert "terminal" in drift.reason
    ahead = {"id": "in_1", "status": "open", "total_minor": 4900, "currency": "NZD"}
    paid_at_xero = _view("xero", "invoice", {"status": "paid"}, can_push=True)
    [drift] = compare(ahead, paid_at_xero, owner_of=owner_of, provenance={}).drift
    assert drift.action is Action.REPORT  # a destination's paid cannot be pushed back to open


def test_money_is_compared_in_minor_units_and_floats_are_refused() -> None:
    invoice = {"id": "in_1", "status": "open", "total_minor": 500, "currency": "JPY"}
    view = _view("xero", "invoice", {"total_minor": 501}, can_push=True)
    [drift] = compare(invoice, view, owner_of=owner_of, provenance={}).drift
    assert (drift.golden, drift.value, drift.owner) == (500, 501, "stripe")
    with pytest.raises(TypeError):
        compare(invoice, _view("xero", "invoice", {"total_minor": 500.0}), owner_of=owner_of,
                provenance={})  # fmt: skip


def test_dates_are_calendar_dates_and_instants_compare_in_utc() -> None:
    assert normalise(Kind.DATE, "2026-12-31") == date(2026, 12, 31)
    with pytest.raises(TypeError):
        normalise(Kind.DATE, datetime(2026, 12, 31, tzinfo=UTC))
    invoice = {"id": "in_1", "due_date": date(2026, 12, 31)}
    assert compare(invoice, _view("xero", "invoice", {"due_date": "2026-12-31"}),
                   owner_of=owner_of, provenance={}).drift == []  # fmt: skip
    [moved] = compare(invoice, _view("xero", "invoice", {"due_date": "2026-12-30"}),
                      owner_of=owner_of, provenance={}).drift  # fmt: skip
    assert moved.golden == date(2026, 12, 31)
    nz = timezone(timedelta(hours=13))
    assert same("invoice", "paid_at", datetime(2026, 12, 31, 11, tzinfo=UTC),
                datetime(2027, 1, 1, 0, tzinfo=nz).isoformat())  # fmt: skip
    with pytest.raises(TypeError):
        normalise(Kind.DATETIME, "2026-12-31T11:00:00")


def test_a_missing_record_is_pushed_or_held_by_its_dead_letter() -> None:
    missing = _view("xero", "customer", None, can_push=True)
    [drift] = compare(CUSTOMER, missing, owner_of=owner_of, provenance={}).drift
    assert (drift.field, drift.action) == ("*", Action.PUSH)
    held = View("xero", "customer", "cus_1", None, None, can_push=True, dead_letter="name taken")
    [drift] = compare(CUSTOMER, held, owner_of=owner_of, provenance={}).drift
    assert drift.action is Action.HELD
    assert "name taken" in drift.reason


def test_entitlement_is_derived_from_the_billing_status() -> None:
    view = _view("product", "customer", {"entitled": False}, can_push=True)
    [drift] = compare(CUSTOMER, view, owner_of=owner_of, provenance={}).drift
    assert (drift.field, drift.golden, drift.owner) == ("entitled", True, "stripe")
    locked = {**CUSTOMER, "billing_status": "canceled"}
    assert compare(locked, view, owner_of=owner_of, provenance={}).drift == []
