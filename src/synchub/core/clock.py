"""Clocks: the only way code learns the time. Always timezone-aware UTC."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

DEFAULT_TIMEZONE = "Pacific/Auckland"


class Clock(Protocol):
    """Tells the current time as an aware UTC datetime."""

    def now(self) -> datetime:
        """Return the current aware UTC time."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """Return the current aware UTC time."""
        return datetime.now(UTC)


class FixedClock:
    """A clock that moves only when told to (tests, demo dry runs)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """Return the clock's current time."""
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward."""
        with self._lock:
            self._now += delta


def from_unix(seconds: int | float) -> datetime:
    """Convert Unix seconds to an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


def to_utc(value: datetime) -> datetime:
    """Return an aware UTC datetime; naive values are refused, not guessed."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: timestamps must carry a time zone")
    return value.astimezone(UTC)


def local_date(value: datetime, timezone: str = DEFAULT_TIMEZONE) -> date:
    """The calendar date of an instant in an organisation's time zone (Pacific/Auckland default)."""
    return to_utc(value).astimezone(ZoneInfo(timezone)).date()


def isoformat_z(value: datetime) -> str:
    """RFC 3339 text in UTC with a trailing Z and millisecond precision."""
    return to_utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")
