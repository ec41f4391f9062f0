"""Money is integer minor units with ISO 4217 exponents, never a float."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synchub.core.errors import ValidationError
from synchub.core.money import Money, exponent, parse_decimal


@pytest.mark.parametrize(
    ("code", "exp"),
    [("JPY", 0), ("NZD", 2), ("AUD", 2), ("KWD", 3), ("jpy", 0), ("CLF", 4), ("ISK", 0)],
)
def test_exponents_follow_iso_4217(code: str, exp: int) -> None:
    assert exponent(code) == exp


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("49.90", "NZD", 4990),
        ("5000", "JPY", 5000),
        ("1.234", "KWD", 1234),
        ("0.10", "NZD", 10),
        ("-12.5", "AUD", -1250),
        ("1e2", "NZD", 10000),
    ],
)
def test_parse_decimal_is_exact(text: str, currency: str, minor: int) -> None:
    assert parse_decimal(text, currency) == Money(minor, currency)


@pytest.mark.parametrize(
    ("text", "currency"),
    [("49.999", "NZD"), ("1.5", "JPY"), ("1.2345", "KWD"), ("abc", "NZD"), ("NaN", "NZD")],
)
def test_parse_decimal_refuses_what_it_cannot_represent(text: str, currency: str) -> None:
    with pytest.raises(ValidationError):
        parse_decimal(text, currency)


def test_floats_are_refused_everywhere() -> None:
    with pytest.raises(ValidationError):
        parse_decimal(49.9, "NZD")  # type: ignore[arg-type]  # the point of the test
    with pytest.raises(ValidationError):
        Money(49.9, "NZD")  # type: ignore[arg-type]  # the point of the test


def test_decimal_strings_carry_the_currency_decimals() -> None:
    assert Money(4900, "NZD").to_decimal_string() == "49.00"
    assert Money(5000, "JPY").to_decimal_string() == "5000"
    assert Money(1, "KWD").to_decimal_string() == "0.001"
    assert Money(-5, "NZD").to_decimal_string() == "-0.05"


def test_adding_different_currencies_is_an_error() -> None:
    with pytest.raises(ValidationError):
        Money(1, "NZD") + Money(1, "AUD")


def test_bad_currency_codes_are_refused() -> None:
    for code in ("NZ", "NZDD", "N1D", ""):
        with pytest.raises(ValidationError):
            Money(1, code)


@given(
    minor=st.integers(min_value=-(10**15), max_value=10**15),
    currency=st.sampled_from(["NZD", "JPY", "KWD", "AUD", "CLF"]),
)
def test_decimal_round_trip_is_exact(minor: int, currency: str) -> None:
    money = Money(minor, currency)
    assert parse_decimal(money.to_decimal_string(), currency) == money
    assert money.to_decimal() == Decimal(money.to_decimal_string())
