"""Money as integer minor units plus an ISO 4217 currency code. Never a float."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from synchub.core.errors import ValidationError

# ISO 4217 minor-unit exponents that differ from 2. Every other active code uses 2.
_EXPONENT_EXCEPTIONS = {
    # zero-decimal
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    # three-decimal
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
    # four-decimal
    "CLF": 4,
    "UYW": 4,
}


def is_currency_code(code: str) -> bool:
    """Whether the text looks like an ISO 4217 alphabetic code (three upper-case letters)."""
    return len(code) == 3 and code.isascii() and code.isalpha() and code.isupper()


def exponent(currency: str) -> int:
    """Return the ISO 4217 minor-unit exponent of a currency (JPY 0, NZD 2, KWD 3)."""
    code = currency.upper()
    if not is_currency_code(code):
        raise ValidationError(f"not an ISO 4217 currency code: {currency!r}")
    return _EXPONENT_EXCEPTIONS.get(code, 2)


@dataclass(frozen=True, order=True)
class Money:
    """An exact amount: integer minor units of an ISO 4217 currency."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            raise ValidationError(
                f"amount must be an integer of minor units: {self.amount_minor!r}"
            )
        exponent(self.currency)  # validates the code
        if self.currency != self.currency.upper():
            object.__setattr__(self, "currency", self.currency.upper())

    def to_decimal(self) -> Decimal:
        """Return the amount in major units as an exact Decimal (4900 NZD -> 49.00)."""
        exp = exponent(self.currency)
        return Decimal(self.amount_minor).scaleb(-exp).quantize(Decimal(1).scaleb(-exp))

    def to_decimal_string(self) -> str:
        """Return the major-unit amount as a string with exactly the currency's decimals."""
        return format(self.to_decimal(), "f")

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise ValidationError(f"cannot add {other.currency} to {self.currency}")
        return Money(self.amount_minor + other.amount_minor, self.currency)


def parse_decimal(text: str | int | Decimal, currency: str) -> Money:
    """Parse a major-unit amount ("49.90", 49, Decimal) exactly; too many decimals is an error."""
    if isinstance(text, float):
        raise ValidationError("amounts must not be floats; pass a decimal string")
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation as exc:
        raise ValidationError(f"not a decimal amount: {text!r}") from exc
    if not value.is_finite():
        raise ValidationError(f"not a finite amount: {text!r}")
    exp = exponent(currency)
    minor = value.scaleb(exp)
    if minor != minor.to_integral_value():
        raise ValidationError(f"{text!r} has more decimals than {currency.upper()} allows ({exp})")
    return Money(int(minor), currency.upper())
