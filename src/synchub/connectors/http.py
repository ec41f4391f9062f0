"""Translating HTTP outcomes into the error tree, once, for every connector.

Every error raised for a non-2xx response carries a redacted summary of that response as its
cause (`VendorResponseError`), so a dead letter can show what the vendor said without ever
storing a token, a secret or a full email address (ADR 0008).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from synchub.core.errors import RateLimitedError, RejectedError, TransientError
from synchub.observability.logging import SECRET_KEYS

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
BODY_LIMIT = 2048  # characters of a response body kept, after redaction
_SCAN_LIMIT = 64 * 1024  # never run the patterns over more than this
SAFE_HEADERS = frozenset({
    "content-type", "content-length", "date", "retry-after", "request-id", "x-request-id",
    "x-correlation-id", "idempotent-replayed", "stripe-should-retry", "x-rate-limit-problem",
    "x-daylimit-remaining", "x-minlimit-remaining", "x-appminlimit-remaining",
    "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "ratelimit",
    "ratelimit-policy", "x-hubspot-ratelimit-daily", "x-hubspot-ratelimit-daily-remaining",
    "x-hubspot-ratelimit-max", "x-hubspot-ratelimit-remaining",
})  # fmt: skip
REDACTED = "[redacted]"
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
_PATTERNS = (
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]+"),
    re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"),
    re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),  # JWTs
    re.compile(r"\+\d[\d -]{6,}\d"),  # phone numbers in international form
)
_KEY_VALUE = re.compile(
    r"(?i)((?:access_|refresh_|api_|client_)?(?:token|secret|password|api_?key|authorization|"
    r"signature|cookie)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;}]+"
)
_CARD = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")


def _is_luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return REDACTED if _is_luhn(digits) else match.group(0)


def redact_text(text: str) -> str:
    """Text with tokens, secrets, card numbers and phone numbers removed, emails masked."""
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    text = _KEY_VALUE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _CARD.sub(_mask_card, text)
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)


def redact_value(value: Any) -> Any:
    """A parsed JSON value with secret-named keys emptied and every string redacted."""
    if isinstance(value, dict):
        return {
            k: REDACTED
            if any(marker in str(k).lower() for marker in SECRET_KEYS)
            else redact_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


@dataclass(frozen=True)
class ResponseSummary:
    """What a vendor answered, safe to store: status, a few headers, a redacted body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    truncated: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data."""
        return {"status": self.status, "headers": dict(self.headers), "body": self.body,
                "truncated": self.truncated}  # fmt: skip


def summarize_response(response: httpx.Response) -> ResponseSummary:
    """A redacted summary of a response: allow-listed headers, body cut to BODY_LIMIT."""
    headers = {
        name.lower(): redact_text(value)[:200]
        for name, value in response.headers.items()
        if name.lower() in SAFE_HEADERS
    }
    raw = response.content[:_SCAN_LIMIT].decode("utf-8", errors="replace")
    try:
        body = json.dumps(redact_value(json.loads(raw)), ensure_ascii=False)
    except ValueError:
        body = redact_text(raw)
    truncated = len(body) > BODY_LIMIT or len(response.content) > _SCAN_LIMIT
    return ResponseSummary(response.status_code, headers, body[:BODY_LIMIT], truncated)


class VendorResponseError(Exception):
    """The cause attached to an error translated from a response: what the vendor said."""

    def __init__(self, summary: ResponseSummary) -> None:
        super().__init__(f"HTTP {summary.status}")
        self.summary = summary


def response_of(error: BaseException) -> ResponseSummary | None:
    """The vendor response behind an error, following its causes; None when there was none."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, VendorResponseError):
            return current.summary
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


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
    cause = VendorResponseError(summarize_response(response))
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=now)
        raise RateLimitedError(message, retry_after=retry_after, status=status) from cause
    if status in RETRYABLE_STATUSES:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=now)
        raise TransientError(message, retry_after=retry_after, status=status) from cause
    raise RejectedError(message, status=status) from cause


def send(client: httpx.Client, request: httpx.Request, *, vendor: str) -> httpx.Response:
    """Send a request; connection failures and timeouts become TransientError."""
    try:
        return client.send(request)
    except httpx.TimeoutException as exc:
        raise TransientError(f"{vendor} timed out") from exc
    except httpx.TransportError as exc:
        raise TransientError(f"{vendor} unreachable: {type(exc).__name__}") from exc
