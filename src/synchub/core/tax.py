"""GST/VAT arithmetic in integer minor units, per line or per document. Pure; never a float.

Sources state tax in one of two ways, and synchub keeps to what the source did:
- per line (Xero: each LineItem has its TaxAmount, rounded on its own; Stripe: each line's
  `taxes`), the document's tax being what the source says it is;
- per document (tax worked out once on the sum of the lines).

The two can differ by a few minor units. `tax_rounding` is that difference (document tax minus
the sum of the lines' tax); it is recorded on the invoice (`tax_rounding_minor`), never spread
over a line or dropped (ADR 0017).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal

from synchub.core.errors import ValidationError

EXCLUSIVE, INCLUSIVE, NO_TAX = "exclusive", "inclusive", "no_tax"


def _rate(rate_percent: Decimal | str | int) -> Decimal:
    if isinstance(rate_percent, float):
        raise ValidationError("tax rates must not be floats; pass a decimal string")
    rate = Decimal(str(rate_percent))
    if not rate.is_finite() or rate < 0:
        raise ValidationError(f"not a tax rate: {rate_percent!r}")
    return rate


def _round(value: Decimal) -> int:
    """Half away from zero to a whole minor unit (how Xero and Stripe round tax)."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def line_tax(amount_minor: int, rate_percent: Decimal | str | int, line_amount_type: str) -> int:
    """The tax in one line's amount: on top of it (exclusive) or inside it (inclusive)."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise ValidationError(f"amount must be integer minor units: {amount_minor!r}")
    rate = _rate(rate_percent)
    if line_amount_type == NO_TAX:
        return 0
    if line_amount_type == EXCLUSIVE:
        return _round(Decimal(amount_minor) * rate / 100)
    if line_amount_type == INCLUSIVE:
        return _round(Decimal(amount_minor) * rate / (100 + rate))
    raise ValidationError(f"unknown line amount type {line_amount_type!r}")


def tax_per_line(
    amounts_minor: Iterable[int], rate_percent: Decimal | str | int, line_amount_type: str
) -> int:
    """Document tax the way Xero states it: each line rounded on its own, then summed."""
    return sum(line_tax(a, rate_percent, line_amount_type) for a in amounts_minor)


def tax_per_document(
    amounts_minor: Iterable[int], rate_percent: Decimal | str | int, line_amount_type: str
) -> int:
    """Document tax worked out once, on the sum of the lines."""
    return line_tax(sum(amounts_minor), rate_percent, line_amount_type)


def tax_rounding(
    document_tax_minor: int | None, line_taxes_minor: Iterable[int | None]
) -> int | None:
    """Document tax minus the sum of the lines' tax; None when either side is unknown."""
    taxes = list(line_taxes_minor)
    if document_tax_minor is None or not taxes or any(t is None for t in taxes):
        return None
    return document_tax_minor - sum(t for t in taxes if t is not None)
