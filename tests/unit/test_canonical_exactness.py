"""Exactness of the canonical model (issue 5, ADR 0017): minor units per ISO 4217, exact decimal
parsing, GST per line or per document with the rounding difference recorded, calendar dates
that never move, Xero's date forms, and contact persons and refunds from real vendor payloads."""

from __future__ import annotations

import copy
import json
import unicodedata
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from synchub.core import tax
from synchub.core.entities import ENTITIES, LINE_FIELDS
from synchub.core.errors import ConfigError, MappingError, ValidationError
from synchub.core.ids import new_id
from synchub.mapping.catalogue import load_mappings
from synchub.mapping.model import Observation, map_object, parse_mapping_document
from synchub.mapping.transform import money, unit_money, xero_date, xero_time

HERE = Path(__file__).resolve().parents[1] / "data"
XERO_SPEC = Path("/work/shared/vendor/xero/xero_accounting.yaml")
MAPPINGS = load_mappings()
XERO = MAPPINGS["xero"]["xero.v1"]
STRIPE = MAPPINGS["stripe"]["stripe.v1"]
AT = datetime(2026, 12, 3, tzinfo=UTC)


class _DecimalLoader(yaml.SafeLoader):
    """Reads YAML floats as exact Decimals, as the Xero client reads JSON numbers."""


_DecimalLoader.add_constructor(
    "tag:yaml.org,2002:float", lambda loader, node: Decimal(loader.construct_scalar(node))
)
_DecimalLoader.add_constructor(  # DateString stays the text Xero wrote
    "tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node)
)


def _xero_invoice() -> dict[str, Any]:
    """Xero's own GET /Invoices/{InvoiceID} example (a copy is kept in tests/data/xero)."""
    return dict(json.loads((HERE / "xero" / "invoice.json").read_text(), parse_float=Decimal))


def _map(mapping: Any, object_type: str, obj: dict[str, Any]) -> list[Observation]:
    return map_object(mapping, object_type, obj, source="s", source_version=1, observed_at=AT)


# -- the model ----------------------------------------------------------------------------------


def test_contacts_and_refunds_are_canonical_entities_with_prefixed_ids() -> None:
    assert {
        "customer",
        "account",
        "contact",
        "subscription",
        "plan",
        "invoice",
        "payment",
        "refund",
    } <= set(ENTITIES)
    assert new_id("contact").startswith("con_")
    assert new_id("refund").startswith("rfd_")
    line_fields = {f.name for f in LINE_FIELDS}
    assert {"tax_minor", "tax_type", "tax_rate", "quantity_decimal"} <= line_fields
    invoice_fields = {f.name for f in ENTITIES["invoice"]}
    assert {"line_amount_type", "tax_rounding_minor"} <= invoice_fields


# -- money ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("115.00", "NZD", 11500),
        ("1500", "JPY", 1500),
        ("1.234", "KWD", 1234),
        (Decimal("0.10"), "NZD", 10),
        ("-0.05", "AUD", -5),
    ],
)
def test_decimal_amounts_become_exact_minor_units(text: Any, currency: str, minor: int) -> None:
    assert money(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency"), [("0.125", "NZD"), ("1.5", "JPY"), ("0.0001", "KWD")]
)
def test_more_precision_than_the_currency_has_is_refused_not_rounded(
    text: str, currency: str
) -> None:
    with pytest.raises(MappingError, match="more decimals"):
        money(text, currency)


def test_floats_never_become_money() -> None:
    with pytest.raises(MappingError, match="exact decimal"):
        money(0.1 + 0.2, "NZD")


def test_a_unit_price_finer_than_the_currency_is_kept_exactly_not_rounded() -> None:
    invoice = _xero_invoice()
    invoice["LineItems"][0].update(
        UnitAmount=Decimal("0.1234"), Quantity=Decimal("10000.0000"), LineAmount=Decimal("1234.00")
    )
    [obs] = _map(XERO, "invoice", invoice)
    [line] = obs.lines
    assert line.fields["unit_amount_minor"] is None
    assert line.fields["unit_amount_decimal"] == "0.1234"
    assert (line.fields["quantity"], line.fields["quantity_decimal"]) == (10000, "10000.0000")
    assert line.fields["amount_minor"] == 123400
    assert unit_money("0.12", "NZD") == 12


def test_a_xero_amount_finer_than_its_currency_fails_the_mapping() -> None:
    invoice = _xero_invoice()
    invoice["Total"] = Decimal("148062.765")
    with pytest.raises(MappingError, match="total_minor"):
        _map(XERO, "invoice", invoice)


def test_xero_amounts_are_read_in_the_documents_currency() -> None:
    invoice = _xero_invoice()
    invoice.update(
        CurrencyCode="JPY",
        Total=Decimal("1500"),
        SubTotal=Decimal("1500"),
        AmountPaid=Decimal("1500"),
        TotalTax=Decimal("0"),
    )
    invoice["LineItems"][0].update(
        UnitAmount=Decimal("1500"), LineAmount=Decimal("1500"), TaxAmount=Decimal("0")
    )
    [obs] = _map(XERO, "invoice", invoice)
    assert (obs.fields["total_minor"], obs.fields["currency"]) == (1500, "JPY")
    assert obs.lines[0].fields["currency"] == "JPY"
    invoice["CurrencyCode"] = "KWD"
    [obs] = _map(XERO, "invoice", invoice)
    assert obs.fields["total_minor"] == 1_500_000


@given(
    minor=st.integers(min_value=-(10**12), max_value=10**12),
    currency=st.sampled_from(["NZD", "JPY", "KWD"]),
)
def test_xero_decimals_round_trip_exactly(minor: int, currency: str) -> None:
    exp = {"NZD": 2, "JPY": 0, "KWD": 3}[currency]
    assert money(Decimal(minor).scaleb(-exp), currency) == minor


# -- tax -------------------------------------------------------------------------------------------


def test_gst_per_line_and_per_document_differ_and_both_are_exact() -> None:
    lines = [333, 333, 334]  # three lines of NZD 3.33/3.33/3.34 at 15 % GST
    assert [tax.line_tax(a, "15", "exclusive") for a in lines] == [50, 50, 50]
    assert tax.tax_per_line(lines, "15", "exclusive") == 150
    assert tax.tax_per_document([101, 101, 101], "15", "exclusive") == 45  # 303 x 0.15 = 45.45
    assert tax.tax_per_line([101, 101, 101], "15", "exclusive") == 45  # 15.15 -> 15 each
    assert tax.tax_per_document([103, 103, 103], "15", "exclusive") == 46  # 46.35
    assert tax.tax_per_line([103, 103, 103], "15", "exclusive") == 45  # 15.45 -> 15 each
    assert tax.line_tax(11500, "15", "inclusive") == 1500
    assert tax.line_tax(11500, "15", "no_tax") == 0
    with pytest.raises(ValidationError):
        tax.line_tax(100, 15.0, "exclusive")  # type: ignore[arg-type]  # the point of the test


def test_xero_line_tax_and_document_tax_difference_is_recorded_not_absorbed() -> None:
    invoice = _xero_invoice()
    line = invoice["LineItems"][0]
    line.update(
        UnitAmount=Decimal("1.03"),
        LineAmount=Decimal("1.03"),
        TaxAmount=Decimal("0.15"),
        TaxType="OUTPUT2",
    )
    invoice["LineItems"] = [dict(line, LineItemID=f"li-{i}") for i in range(3)]
    invoice.update(
        SubTotal=Decimal("3.09"),
        TotalTax=Decimal("0.46"),
        Total=Decimal("3.55"),
        AmountPaid=Decimal("3.55"),
    )
    [obs] = _map(XERO, "invoice", invoice)
    assert obs.fields["tax_minor"] == 46
    assert [ln.fields["tax_minor"] for ln in obs.lines] == [15, 15, 15]
    assert obs.fields["tax_rounding_minor"] == 1  # 46 - 45, kept on the invoice
    assert obs.lines[0].fields["tax_type"] == "OUTPUT2"


@pytest.mark.parametrize(
    ("xero", "canonical"),
    [("Exclusive", "exclusive"), ("Inclusive", "inclusive"), ("NoTax", "no_tax")],
)
def test_xero_line_amount_types_map(xero: str, canonical: str) -> None:
    invoice = _xero_invoice()
    invoice["LineAmountTypes"] = xero
    [obs] = _map(XERO, "invoice", invoice)
    assert obs.fields["line_amount_type"] == canonical


def test_an_unknown_line_amount_type_is_flagged() -> None:
    invoice = _xero_invoice()
    invoice["LineAmountTypes"] = "Sometimes"
    with pytest.raises(MappingError, match="line_amount_type"):
        _map(XERO, "invoice", invoice)


def test_stripe_line_taxes_sum_and_the_rounding_difference_is_recorded() -> None:
    objects = json.loads((HERE / "stripe" / "objects-2026-10-28.json").read_text())
    invoice = copy.deepcopy(objects["invoice"])
    line = invoice["lines"]["data"][0]
    line.update(
        amount=333,
        taxes=[
            {"amount": 50, "tax_behavior": "exclusive", "tax_rate_details": {"tax_rate": "txr_gst"}}
        ],
    )
    invoice["lines"]["data"] = [dict(line, id=f"il_{i}") for i in range(3)]
    invoice.update(
        subtotal=999,
        total_excluding_tax=999,
        total=1149,
        total_taxes=[{"amount": 149, "tax_behavior": "exclusive"}],
    )
    [obs] = _map(STRIPE, "invoice", invoice)
    assert [ln.fields["tax_minor"] for ln in obs.lines] == [50, 50, 50]
    assert obs.lines[0].fields["tax_type"] == "txr_gst"
    assert (obs.fields["tax_minor"], obs.fields["tax_rounding_minor"]) == (150, 0)
    invoice["total"] = 1148  # Stripe's document tax one cent under the lines' sum
    [obs] = _map(STRIPE, "invoice", invoice)
    assert (obs.fields["tax_minor"], obs.fields["tax_rounding_minor"]) == (149, -1)
    assert obs.fields["line_amount_type"] == "exclusive"


def test_stripe_2023_tax_amounts_are_read_too() -> None:
    objects = json.loads((HERE / "stripe" / "objects-2023-08-16.json").read_text())
    invoice = copy.deepcopy(objects["invoice"])
    invoice["lines"]["data"][0]["tax_amounts"] = [
        {"amount": 150, "inclusive": True, "tax_rate": "txr_1", "taxable_amount": 1000}
    ]
    invoice["total_tax_amounts"] = [{"amount": 150, "inclusive": True, "tax_rate": "txr_1"}]
    [obs] = _map(STRIPE, "invoice", invoice)
    assert obs.lines[0].fields["tax_minor"] == 150
    assert obs.fields["line_amount_type"] == "inclusive"


def test_unstated_line_tax_is_unknown_not_zero() -> None:
    objects = json.loads((HERE / "stripe" / "objects-2026-10-28.json").read_text())
    invoice = copy.deepcopy(objects["invoice"])
    invoice["lines"]["data"][0]["taxes"] = None
    [obs] = _map(STRIPE, "invoice", invoice)
    assert obs.lines[0].fields["tax_minor"] is None
    assert obs.fields["tax_rounding_minor"] is None


# -- dates -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/Date(1739404800000+1300)/", date(2025, 2, 13)),  # 00:00Z = 13:00 NZDT, the 13th
        ("/Date(1739358000000+1300)/", date(2025, 2, 13)),  # 00:00 NZDT = 11:00Z on the 12th
        ("/Date(1552435200000+0000)/", date(2019, 3, 13)),
        ("/Date(1552435200000)/", date(2019, 3, 13)),
        ("2019-03-13T00:00:00", date(2019, 3, 13)),
        ("2025-02-13T00:00:00+13:00", date(2025, 2, 13)),
        ("2019-03-13", date(2019, 3, 13)),
    ],
)
def test_xero_dates_are_read_as_written_in_both_forms(text: str, expected: date) -> None:
    assert xero_date(text) == expected


def test_xero_instants_in_both_forms_are_aware_utc() -> None:
    assert xero_time("/Date(1739404800000+1300)/") == datetime(2025, 2, 13, tzinfo=UTC)
    assert xero_time("/Date(1551981568133+0000)/") == datetime(
        2019, 3, 7, 17, 59, 28, 133000, tzinfo=UTC
    )
    assert xero_time("2019-03-07T17:59:28Z") == datetime(2019, 3, 7, 17, 59, 28, tzinfo=UTC)
    assert xero_time("2019-03-07T17:59:28") == datetime(2019, 3, 7, 17, 59, 28, tzinfo=UTC)
    with pytest.raises(MappingError):
        xero_time("/Date(abc)/")


def test_a_xero_due_date_in_the_vendor_example_stays_that_date() -> None:
    [obs] = _map(XERO, "invoice", _xero_invoice())
    assert obs.fields["due_date"] == date(2019, 3, 13)  # DueDateString 2019-03-13T00:00:00


def test_a_stripe_due_date_at_2330_in_auckland_stays_that_nz_date() -> None:
    objects = json.loads((HERE / "stripe" / "objects-2026-10-28.json").read_text())
    invoice = copy.deepcopy(objects["invoice"])
    # 23:30 NZDT on 14 Feb 2025 is 10:30Z on the 14th; 23:30 NZST on 30 Jun is 11:30Z.
    invoice["due_date"] = int(datetime(2025, 2, 14, 10, 30, tzinfo=UTC).timestamp())
    [obs] = _map(STRIPE, "invoice", invoice)
    assert obs.fields["due_date"] == date(2025, 2, 14)
    invoice["due_date"] = int(datetime(2025, 6, 30, 11, 30, tzinfo=UTC).timestamp())
    [obs] = _map(STRIPE, "invoice", invoice)
    assert obs.fields["due_date"] == date(2025, 6, 30)


# -- contact persons and refunds ---------------------------------------------------------


def test_xero_contact_persons_become_contacts_of_the_customer() -> None:
    contact = _xero_invoice()["Contact"]
    contact["ContactPersons"].append(
        {
            "FirstName": unicodedata.normalize("NFD", "Mere"),
            "LastName": unicodedata.normalize("NFD", "Pōtae"),
            "EmailAddress": " Mere@Example.NZ ",
        }
    )
    customer, debbie, mere = _map(XERO, "contact", contact)
    assert (customer.entity, customer.external_id) == ("customer", contact["ContactID"])
    assert debbie.entity == "contact"
    assert debbie.external_id == f"{contact['ContactID']}/contact_person/debbie@rockstar.com"
    assert debbie.fields == {"name": "Debbie Gwyther", "email": "debbie@rockstar.com"}
    assert debbie.refs == {"customer_id": ("customer", contact["ContactID"])}
    assert mere.fields["name"] == "Mere Pōtae"
    assert unicodedata.is_normalized("NFC", mere.fields["name"])
    assert mere.fields["email"] == "mere@example.nz"


def test_a_contact_person_without_an_email_is_keyed_by_position() -> None:
    contact = _xero_invoice()["Contact"]
    contact["ContactPersons"] = [{"FirstName": "Ana", "LastName": "Rua"}]
    _, ana = _map(XERO, "contact", contact)
    assert ana.external_id == f"{contact['ContactID']}/contact_person/0"


def test_the_vendor_refund_fixture_maps_to_a_refund_of_its_charge() -> None:
    refund = json.loads((HERE / "stripe" / "refund-2026-10-28.json").read_text())
    [obs] = _map(STRIPE, "refund", refund)
    assert obs.entity == "refund"
    assert obs.fields["amount_minor"] == 100
    assert obs.fields["currency"] == "USD"
    assert obs.fields["status"] == "succeeded"
    assert obs.fields["refunded_at"] == datetime.fromtimestamp(1234567890, UTC)
    assert obs.refs["payment_id"] == ("payment", "ch_1PgafuB7WZ01zgkWXYmPNZs8")


def test_charge_refunded_maps_the_charge_then_its_refunds() -> None:
    event = json.loads((HERE / "stripe" / "events" / "charge.refunded.json").read_text())
    refund = json.loads((HERE / "stripe" / "refund-2026-10-28.json").read_text())
    charge = event["data"]["object"]
    charge["customer"] = "cus_1"
    charge["refunds"]["data"] = [dict(refund, customer=None, reason="duplicate")]
    payment, mapped = _map(STRIPE, "charge", charge)
    assert payment.entity == "payment"
    assert payment.fields["amount_refunded_minor"] == 100
    assert mapped.entity == "refund"
    assert mapped.external_id == "re_1Pgc72B7WZ01zgkWqPvrRrPE"
    assert mapped.refs == {
        "payment_id": ("payment", charge["id"]),
        "customer_id": ("customer", "cus_1"),
    }
    assert mapped.fields["reason"] == "duplicate"


def test_a_child_mapping_must_name_a_real_parent_field() -> None:
    doc = {
        "system": "x",
        "versions": [
            {
                "version": "x.v1",
                "objects": {
                    "charge": {
                        "entity": "payment",
                        "children": [{"path": "refunds", "object": "refund", "parent_ref": "nope"}],
                    },
                    "refund": {"entity": "refund"},
                },
            }
        ],
    }
    with pytest.raises(ConfigError, match="nope"):
        parse_mapping_document(doc)


def test_a_money_transform_must_say_where_the_currency_is() -> None:
    doc = {
        "system": "x",
        "versions": [
            {
                "version": "x.v1",
                "objects": {
                    "inv": {
                        "entity": "invoice",
                        "fields": {"total_minor": {"path": "T", "transform": "money"}},
                    }
                },
            }
        ],
    }
    with pytest.raises(ConfigError, match="currency"):
        parse_mapping_document(doc)


def test_the_xero_example_kept_in_tests_is_the_vendors() -> None:
    if not XERO_SPEC.exists():
        pytest.skip("shared vendor files are not on this machine")
    spec = yaml.load(XERO_SPEC.read_text(), Loader=_DecimalLoader)  # noqa: S506 - SafeLoader subclass
    example = spec["paths"]["/Invoices/{InvoiceID}"]["get"]["responses"]["200"]["content"][
        "application/json"
    ]["example"]["Invoices"][0]
    assert json.loads(json.dumps(example, default=str)) == json.loads(
        json.dumps(_xero_invoice(), default=str)
    )
