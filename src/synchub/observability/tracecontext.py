"""W3C trace context: accept a valid `traceparent`, or start a new trace."""

from __future__ import annotations

import re
import secrets

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def is_valid_traceparent(value: str | None) -> bool:
    """Whether a header is a version-00 traceparent with non-zero lowercase ids."""
    if not value:
        return False
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return False
    return set(match.group(1)) != {"0"} and set(match.group(2)) != {"0"}


def new_traceparent() -> str:
    """A new sampled trace with a random trace id and span id."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def continue_or_start(value: str | None) -> str:
    """The caller's traceparent if valid, else a new one (an invalid header starts a new trace)."""
    return value.strip() if value and is_valid_traceparent(value) else new_traceparent()


def trace_id_of(traceparent: str | None) -> str | None:
    """The 32-hex trace id inside a traceparent."""
    match = _TRACEPARENT.match(traceparent or "")
    return match.group(1) if match else None
