"""Stripe payloads of both API eras map to exact canonical records."""

from __future__ import annotations

import copy
import json
import unicodedata
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synchub.connectors.stripe.webhooks import observations_from_event, parse_event
from synchub.core.errors import MappingError, ValidationError
from synchub.mapping.catalogue import load_mappings
from synchub.mapping.model import Observation, map_object

DATA = Path(__file__).resolve().parents[1] / "data" / "stripe"
MAPPING = load_mappings()["stripe"]["stripe.v1"]
AT = datetime(2026, 12, 3, tzinfo=UTC)


def _objects(era: str) -> dict[str, Any]:
    return dict(json.loads((DATA / f"objects-{era}.json").read_text()))


def _map(object_type: str, obj: dict[str, Any]) -> list[Observation]:
    return map_object(MAPPING, object_type, obj, source="stripe", source_version=1, observed_at=AT)


def test_invoice_paid_event_maps_amounts_in_minor_units_with_currency() -> None:
    body = (DATA / "events/invoice.paid.json").read_bytes()
    [obs] = observations_from_event(parse_event(body), MAPPING, source="stripe", observed_at=AT)
    assert obs.entity == "invoice"
    assert obs.fields["status"] == "paid"
    assert obs.fields["currency"] == "USD"
    assert obs.fields["total_minor"] == 1000
    assert obs.fields["amount_paid_minor"] == 1000
    assert obs.fields["tax_minor"] == 0
    assert obs.source_version == 1234567890 * 1000
    assert obs.refs["customer_id"] == ("customer", "cus_QXg1o8vcGmoR32")
    assert obs.refs["subscription_id"] == ("subscription", "subscription")  # the new `parent` path
    [line] = obs.lines
    assert line.fields["amount_minor"] == 1000
    assert line.fields["quantity"] == 1


def test_due_dates_are_calendar_dates_in_auckland() -> None:
    invoice = _objects("2026-10-28")["invoice"]
    invoice["due_date"] = int(datetime(2026, 12, 3, 11, 30, tzinfo=UTC).timestamp())
    [obs] = _map("invoice", invoice)
    assert obs.fields["due_date"] == date(2026, 12, 4)  # 00:30 on the 4th in Auckland (NZDT)


@pytest.mark.parametrize("era", ["2023-08-16", "2026-10-28"])
def test_both_api_eras_map_every_entity(era: str) -> None:
    objects = _objects(era)
    sub_obs = _map("subscription", objects["subscription"])
    assert [o.entity for o in sub_obs] == ["plan", "subscription"]
    assert sub_obs[-1].fields["status"] == "active"
    assert sub_obs[-1].fields["amount_minor"] == 2000
    [invoice] = _map("invoice", objects["invoice"])
    assert invoice.fields["total_minor"] == 1000
    [customer] = _map("customer", objects["customer"])
    assert customer.fields["currency"] in (None, "USD")
    [charge] = _map("charge", objects["charge"])
    assert charge.fields["status"] == "succeeded"


def test_old_invoice_subscription_field_still_links() -> None:
    invoice = _objects("2023-08-16")["invoice"]
    invoice["subscription"] = "sub_old"
    [obs] = _map("invoice", invoice)
    assert obs.refs["subscription_id"] == ("subscription", "sub_old")


def test_zero_decimal_currencies_keep_their_units() -> None:
    invoice = copy.deepcopy(_objects("2026-10-28")["invoice"])
    invoice.update(currency="jpy", total=5000, subtotal=5000, total_excluding_tax=5000)
    [obs] = _map("invoice", invoice)
    assert (obs.fields["total_minor"], obs.fields["currency"]) == (5000, "JPY")


def test_names_keep_macrons_and_are_nfc() -> None:
    customer = _objects("2026-10-28")["customer"]
    customer["name"] = unicodedata.normalize("NFD", "  Aroha Ngāta ")
    customer["email"] = " Aroha@Kowhai.CO.NZ "
    [obs] = _map("customer", customer)
    assert obs.fields["name"] == "Aroha Ngāta"
    assert unicodedata.is_normalized("NFC", obs.fields["name"])
    assert obs.fields["email"] == "aroha@kowhai.co.nz"


def test_plus_addressing_is_kept() -> None:
    customer = _objects("2026-10-28")["customer"]
    customer["email"] = "Ops+Billing@Example.com"
    [obs] = _map("customer", customer)
    assert obs.fields["email"] == "ops+billing@example.com"


def test_a_float_amount_is_a_mapping_error_not_a_rounding() -> None:
    invoice = _objects("2026-10-28")["invoice"]
    invoice["total"] = 10.5
    with pytest.raises(MappingError, match=r"expected integer minor units, got 10\.5"):
        _map("invoice", invoice)


def test_an_unknown_status_is_flagged_not_written_as_null() -> None:
    invoice = _objects("2026-10-28")["invoice"]
    invoice["status"] = "teleported"
    with pytest.raises(MappingError, match="status"):
        _map("invoice", invoice)


def test_a_missing_required_field_is_flagged() -> None:
    invoice = _objects("2026-10-28")["invoice"]
    del invoice["currency"]
    with pytest.raises(MappingError, match="currency"):
        _map("invoice", invoice)


def test_unmapped_objects_produce_no_observations() -> None:
    event = json.loads((DATA / "events/customer.created.json").read_text())
    event["data"]["object"] = {"object": "payout", "id": "po_1"}
    assert (
        observations_from_event(
            parse_event(json.dumps(event).encode()), MAPPING, source="stripe", observed_at=AT
        )
        == []
    )


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"id": 1}', b'{"id":"evt_1","type":"x","created":"now","data":{}}'],
)
def test_bodies_that_are_not_events_are_validation_errors(body: bytes) -> None:
    with pytest.raises(ValidationError):
        parse_event(body)


def test_validation_errors_point_at_the_fields() -> None:
    with pytest.raises(ValidationError) as info:
        parse_event(b'{"type": "customer.created", "created": 1, "data": {"object": {}}}')
    assert {p.pointer for p in info.value.problems} == {"/id", "/data/object"}


@given(
    amount=st.integers(min_value=0, max_value=10**12),
    currency=st.sampled_from(["nzd", "aud", "jpy", "kwd", "usd"]),
)
def test_amounts_round_trip_exactly(amount: int, currency: str) -> None:
    invoice = _objects("2026-10-28")["invoice"]
    invoice.update(currency=currency, total=amount, subtotal=amount, total_excluding_tax=amount)
    [obs] = _map("invoice", invoice)
    assert obs.fields["total_minor"] == amount
    assert obs.fields["currency"] == currency.upper()
