"""Value transforms named in mapping YAML. Pure functions: value in, canonical value out."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from synchub.core.clock import DEFAULT_TIMEZONE, from_unix, local_date
from synchub.core.errors import MappingError, ValidationError
from synchub.core.money import exponent, is_currency_code, parse_decimal

Transform = Callable[[Any], Any]
CurrencyTransform = Callable[[Any, str | None], Any]

# Xero's Microsoft JSON dates: `/Date(1739404800000+1300)/` = Unix ms (always UTC) plus the
# offset of the clock that wrote it.
_MS_DATE = re.compile(r"^/Date\((?P<ms>-?\d+)(?P<offset>[+-]\d{4})?\)/$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_text(value: Any) -> str | None:
    """Trimmed Unicode NFC text; empty becomes None (macrons survive)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise MappingError(f"expected text, got {type(value).__name__}")
    text = unicodedata.normalize("NFC", value).strip()
    return text or None


def normalise_email(value: Any) -> str | None:
    """Trimmed, NFC and lower-cased; plus-addressing is kept (it is a distinct address).

    `str.lower`, not `str.casefold`: folding turns `ß` into `ss`, which would merge two
    different mailboxes.
    """
    text = to_text(value)
    return text.lower() if text else None


def to_upper(value: Any) -> str | None:
    """Upper-case text (country codes)."""
    text = to_text(value)
    return text.upper() if text else None


def to_currency(value: Any) -> str | None:
    """An ISO 4217 code, upper-cased and checked."""
    text = to_upper(value)
    if text is None:
        return None
    if not is_currency_code(text):
        raise MappingError(f"not an ISO 4217 currency code: {value!r}")
    exponent(text)
    return text


def to_minor_units(value: Any) -> int | None:
    """An integer count of minor units; floats and booleans are refused, never rounded."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
        raise MappingError(f"expected integer minor units, got {value!r}")
    return value


def to_int(value: Any) -> int | None:
    """A plain integer."""
    return to_minor_units(value)


def to_bool(value: Any) -> bool | None:
    """A boolean; only real booleans are accepted."""
    if value is None or isinstance(value, bool):
        return value
    raise MappingError(f"expected a boolean, got {value!r}")


def unix_to_datetime(value: Any) -> datetime | None:
    """Unix seconds to an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise MappingError(f"expected Unix seconds, got {value!r}")
    return from_unix(int(value))


def unix_to_local_date(value: Any, timezone: str = DEFAULT_TIMEZONE) -> date | None:
    """Unix seconds to the calendar date in the organisation's time zone."""
    instant = unix_to_datetime(value)
    return local_date(instant, timezone) if instant else None


def to_decimal(value: Any) -> Decimal | None:
    """An exact Decimal from a decimal string, an int or a Decimal; floats are refused.

    Vendor JSON is parsed with `parse_float=Decimal` (Xero client), so `115.00` arrives exact.
    """
    if value is None:
        return None
    if isinstance(value, bool | float) or not isinstance(value, str | int | Decimal):
        raise MappingError(f"expected an exact decimal (string, int or Decimal), got {value!r}")
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation as exc:
        raise MappingError(f"not a decimal: {value!r}") from exc
    if not number.is_finite():
        raise MappingError(f"not a finite decimal: {value!r}")
    return number


def decimal_text(value: Any) -> str | None:
    """An exact decimal kept as text with the source's own digits ("1.0000", "0.1234")."""
    number = to_decimal(value)
    return None if number is None else format(number, "f")


def whole(value: Any) -> int | None:
    """A decimal that is a whole number ("2.0000" -> 2); None for a fraction (kept elsewhere)."""
    number = to_decimal(value)
    if number is None or number != number.to_integral_value():
        return None
    return int(number)


def money(value: Any, currency: str | None) -> int | None:
    """A major-unit decimal ("115.00") to integer minor units of `currency`, exactly.

    More decimals than the currency has (`"0.125"` NZD, `"1.5"` JPY) is a MappingError: an
    amount is never rounded silently (ADR 0017).
    """
    number = to_decimal(value)
    if number is None:
        return None
    if currency is None:
        raise MappingError(f"amount {value!r} has no currency to read it in")
    try:
        return parse_decimal(number, currency).amount_minor
    except ValidationError as exc:
        raise MappingError(str(exc)) from exc


def unit_money(value: Any, currency: str | None) -> int | None:
    """Like `money`, but a unit price finer than the currency (Xero unitdp=4) gives None: the
    exact price is kept in `unit_amount_decimal`, never rounded into minor units."""
    try:
        return money(value, currency)
    except MappingError:
        if to_decimal(value) is None or currency is None:
            raise
        return None


def _ms_date(value: str) -> tuple[datetime, timezone] | None:
    match = _MS_DATE.match(value.strip())
    if match is None:
        return None
    instant = _EPOCH + timedelta(milliseconds=int(match.group("ms")))  # exact, no float
    offset = match.group("offset")
    if offset is None:
        return instant, UTC
    minutes = int(offset[1:3]) * 60 + int(offset[3:5])
    return instant, timezone(timedelta(minutes=-minutes if offset[0] == "-" else minutes))


def _iso(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise MappingError(f"not a date: {value!r}") from exc


def xero_time(value: Any) -> datetime | None:
    """An instant from `/Date(ms±hhmm)/` or ISO 8601 (no offset means UTC), as aware UTC."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise MappingError(f"expected a date string, got {value!r}")
    parsed = _ms_date(value)
    if parsed is not None:
        return parsed[0]
    when = _iso(value)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


def xero_date(value: Any) -> date | None:
    """A calendar date (Xero Date, DueDate) exactly as Xero wrote it, never shifted.

    `/Date(ms+1300)/` is read on the clock that wrote it (the offset), `/Date(ms)/` and
    `2025-02-13T00:00:00` as written: the organisation's date is never converted through
    another zone, so a due date cannot move a day.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise MappingError(f"expected a date string, got {value!r}")
    parsed = _ms_date(value)
    if parsed is not None:
        instant, zone = parsed
        return instant.astimezone(zone).date()
    return _iso(value).date()


def identity(value: Any) -> Any:
    """The value unchanged (ids and other opaque strings)."""
    return value


TRANSFORMS: dict[str, Transform] = {
    "text": to_text,
    "email": normalise_email,
    "upper": to_upper,
    "currency": to_currency,
    "minor_units": to_minor_units,
    "int": to_int,
    "bool": to_bool,
    "unix_time": unix_to_datetime,
    "unix_date": unix_to_local_date,
    "decimal": decimal_text,
    "whole": whole,
    "xero_time": xero_time,
    "xero_date": xero_date,
    "id": identity,
}

# Transforms that read an amount in a currency: the mapping names where the currency is.
CURRENCY_TRANSFORMS: dict[str, CurrencyTransform] = {
    "money": money,
    "unit_money": unit_money,
}
