"""Which canonical events a golden-record change produces; terminal states never regress."""

from __future__ import annotations

import pytest

from synchub.events.model import CATALOGUE, derive_events, is_regression


def test_every_event_name_is_entity_dot_past_tense_and_known() -> None:
    for name, kind in CATALOGUE.items():
        entity, _, verb = name.partition(".")
        assert entity == kind.entity
        assert verb
        assert kind.dataschema.endswith(f"/{name}/v1.json")


@pytest.mark.parametrize(
    ("entity", "before", "after", "changed", "expected"),
    [
        ("customer", None, {"email": "a@b.nz"}, [], ["customer.created"]),
        ("customer", {"name": "A"}, {"name": "B"}, ["name"], ["customer.updated"]),
        ("customer", {"name": "A"}, {"name": "A"}, [], []),
        ("subscription", None, {"status": "trialing"}, [], ["subscription.created"]),
        (
            "subscription",
            None,
            {"status": "active"},
            [],
            ["subscription.created", "subscription.activated"],
        ),
        (
            "subscription",
            {"status": "trialing"},
            {"status": "active"},
            ["status"],
            ["subscription.activated"],
        ),
        (
            "subscription",
            {"status": "active"},
            {"status": "canceled"},
            ["status"],
            ["subscription.canceled"],
        ),
        (
            "subscription",
            {"status": "active"},
            {"status": "past_due"},
            ["status"],
            ["subscription.updated"],
        ),
        ("invoice", None, {"status": "paid"}, [], ["invoice.created", "invoice.paid"]),
        ("invoice", {"status": "draft"}, {"status": "open"}, ["status"], ["invoice.finalized"]),
        (
            "invoice",
            {"status": "open", "attempt_count": 0},
            {"status": "open", "attempt_count": 1},
            ["attempt_count"],
            ["invoice.payment_failed"],
        ),
        ("invoice", {"status": "open"}, {"status": "paid"}, ["status"], ["invoice.paid"]),
        ("payment", None, {"status": "succeeded"}, [], ["payment.succeeded"]),
        (
            "payment",
            {"status": "succeeded", "amount_refunded_minor": 0},
            {"status": "succeeded", "amount_refunded_minor": 500},
            ["amount_refunded_minor"],
            ["payment.refunded"],
        ),
    ],
)
def test_changes_produce_the_expected_events(
    entity: str,
    before: dict[str, object] | None,
    after: dict[str, object],
    changed: list[str],
    expected: list[str],
) -> None:
    assert derive_events(entity, before, after, changed) == expected


@pytest.mark.parametrize(
    ("entity", "before", "after", "regresses"),
    [
        ("subscription", "canceled", "active", True),
        ("subscription", "active", "past_due", False),
        ("subscription", "past_due", "active", False),
        ("invoice", "paid", "open", True),
        ("invoice", "void", "open", True),
        ("invoice", "open", "draft", True),
        ("invoice", "open", "paid", False),
        ("invoice", "draft", "open", False),
    ],
)
def test_terminal_states_never_move_back(
    entity: str, before: str, after: str, regresses: bool
) -> None:
    assert is_regression(entity, before, after) is regresses
