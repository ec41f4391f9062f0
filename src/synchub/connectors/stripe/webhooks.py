"""Stripe webhook signatures: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]` over `{t}.{raw body}`.

Verified on the raw request bytes, before any parsing, with a constant-time comparison.
Unlike Stripe's SDK we also refuse timestamps too far in the *future* (STANDARDS.md §4).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from synchub.core.errors import FieldProblem, SignatureError, ValidationError
from synchub.core.jsontext import unstorable_strings
from synchub.mapping.model import MappingVersion, Observation, map_object

DEFAULT_TOLERANCE_SECONDS = 300


def compute_signature(payload: bytes, *, secret: str, timestamp: int) -> str:
    """Hex HMAC-SHA256 of `{timestamp}.{payload}` keyed with the endpoint secret."""
    signed = str(timestamp).encode("ascii") + b"." + payload
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def sign_header(payload: bytes, *, secret: str, timestamp: int) -> str:
    """The Stripe-Signature header value Stripe would send for these bytes."""
    return f"t={timestamp},v1={compute_signature(payload, secret=secret, timestamp=timestamp)}"


def parse_header(header: str) -> tuple[int, list[str]]:
    """Split a Stripe-Signature header into its timestamp and v1 signatures (others ignored)."""
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            canonical = 0 < len(value) <= 12 and value.isascii() and value.isdigit()
            if not canonical or value != str(int(value)) or timestamp is not None:
                raise SignatureError("malformed timestamp in Stripe-Signature")
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None:
        raise SignatureError("no timestamp in Stripe-Signature")
    if not signatures:
        raise SignatureError("no v1 signature in Stripe-Signature")
    return timestamp, signatures


def verify_signature(
    payload: bytes,
    header: str | None,
    *,
    secrets: list[str],
    now: int,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> int:
    """Check a Stripe-Signature header against the raw body; return its timestamp or raise."""
    if not header:
        raise SignatureError("missing Stripe-Signature header")
    timestamp, signatures = parse_header(header)
    if abs(now - timestamp) > tolerance:
        raise SignatureError("timestamp outside the tolerance window")
    for secret in secrets:
        expected = compute_signature(payload, secret=secret, timestamp=timestamp).encode("ascii")
        # Compare against every candidate so timing does not reveal which one matched.
        matched = [hmac.compare_digest(expected, s.encode("ascii", "replace")) for s in signatures]
        if any(matched):
            return timestamp
    raise SignatureError("no signature matches the payload")


# -- reading a verified event -----------------------------------------------------------------

MAPPED_OBJECTS = frozenset({"customer", "subscription", "invoice", "charge", "refund"})
EVENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,255}")
EVENT_TYPE = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)+")
MAX_TYPE_LENGTH = 120


def _is_token(value: Any, pattern: re.Pattern[str]) -> bool:
    return isinstance(value, str) and len(value) <= 255 and pattern.fullmatch(value) is not None


@dataclass(frozen=True)
class StripeEvent:
    """The parts of a Stripe event envelope synchub uses."""

    id: str
    type: str
    created: int
    object_type: str
    object: dict[str, Any]
    api_version: str | None


def parse_event(body: bytes) -> StripeEvent:
    """Parse a verified Stripe event body; a body that is not an event is a ValidationError.

    So is an event with a string no store can keep (NUL, an unpaired surrogate): refused at
    intake with the JSON pointer of each such string, never stored (it could only fail).
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, absurd numbers or depth
        raise ValidationError(
            "body is not JSON", [FieldProblem("", "the request body must be a JSON object")]
        ) from exc
    problems = []
    if not isinstance(data, dict):
        raise ValidationError("body is not a JSON object", [FieldProblem("", "expected an object")])
    unstorable = unstorable_strings(data)
    if unstorable:  # it would pass intake, then fail every processing attempt
        raise ValidationError("the event holds text that cannot be stored", unstorable)
    if not _is_token(data.get("id"), EVENT_ID):
        problems.append(
            FieldProblem(
                "/id", "an event needs an id of letters, digits and _ (at most 255 characters)"
            )
        )
    event_type = data.get("type")
    if not _is_token(event_type, EVENT_TYPE) or len(str(event_type)) > MAX_TYPE_LENGTH:
        problems.append(FieldProblem("/type", "an event needs a type such as customer.created"))
    created = data.get("created")
    if isinstance(created, bool) or not isinstance(created, int) or not 0 <= created < 2**40:
        problems.append(FieldProblem("/created", "an event needs its created time as Unix seconds"))
    obj = (data.get("data") or {}).get("object") if isinstance(data.get("data"), dict) else None
    if not isinstance(obj, dict) or not isinstance(obj.get("object"), str):
        problems.append(FieldProblem("/data/object", "an event needs data.object with its type"))
    if problems:
        raise ValidationError("not a Stripe event", problems)
    if not isinstance(obj, dict) or not isinstance(created, int):  # narrowed above
        raise ValidationError("not a Stripe event")
    return StripeEvent(
        id=data["id"],
        type=data["type"],
        created=created,
        object_type=obj["object"],
        object=obj,
        api_version=data.get("api_version"),
    )


def observations_from_object(
    mapping: MappingVersion,
    object_type: str,
    obj: dict[str, Any],
    *,
    source: str,
    source_version: int,
    observed_at: datetime,
    deleted: bool = False,
) -> list[Observation]:
    """Map one Stripe object to canonical observations ([] for objects synchub does not map)."""
    if object_type not in MAPPED_OBJECTS:
        return []
    return map_object(
        mapping,
        object_type,
        obj,
        source=source,
        source_version=source_version,
        observed_at=observed_at,
        deleted=deleted,
    )


def observations_from_event(
    event: StripeEvent, mapping: MappingVersion, *, source: str, observed_at: datetime
) -> list[Observation]:
    """The observations one Stripe event carries; ordered by the event's own created time."""
    deleted = event.type == "customer.deleted" or bool(event.object.get("deleted"))
    return observations_from_object(
        mapping,
        event.object_type,
        event.object,
        source=source,
        source_version=event.created * 1000,
        observed_at=observed_at,
        deleted=deleted,
    )
