"""Translating HTTP outcomes into the error tree, once, for every connector."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from synchub.core.errors import RateLimitedError, RejectedError, TransientError

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Retry-After as delay-seconds or an HTTP-date; None when absent or malformed."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value) if len(value) <= 12 else None  # absurd values are malformed
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def raise_for_status(
    response: httpx.Response, *, vendor: str, now: datetime, detail: str = ""
) -> None:
    """Raise the right HubError for a non-2xx response; return quietly for 2xx."""
    status = response.status_code
    if status < 300:
        return
    message = f"{vendor} answered {status}" + (f": {detail}" if detail else "")
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=now)
        raise RateLimitedError(message, retry_after=retry_after, status=status)
    if status in RETRYABLE_STATUSES:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=now)
        raise TransientError(message, retry_after=retry_after, status=status)
    raise RejectedError(message, status=status)


def send(client: httpx.Client, request: httpx.Request, *, vendor: str) -> httpx.Response:
    """Send a request; connection failures and timeouts become TransientError."""
    try:
        return client.send(request)
    except httpx.TimeoutException as exc:
        raise TransientError(f"{vendor} timed out") from exc
    except httpx.TransportError as exc:
        raise TransientError(f"{vendor} unreachable: {type(exc).__name__}") from exc
