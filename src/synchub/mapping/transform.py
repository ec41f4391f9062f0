"""Value transforms named in mapping YAML. Pure functions: value in, canonical value out."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from synchub.core.clock import DEFAULT_TIMEZONE, from_unix, local_date
from synchub.core.errors import MappingError
from synchub.core.money import exponent, is_currency_code

Transform = Callable[[Any], Any]


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
    "id": identity,
}
