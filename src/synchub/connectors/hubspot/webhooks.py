"""HubSpot webhook notifications: the v3 signature, and the events of one batch. Pure.

HubSpot signs with the app's client secret: `X-HubSpot-Signature-v3` is
base64(HMAC-SHA256(secret, method + full request URI + raw body + timestamp)), the timestamp
being `X-HubSpot-Request-Timestamp` in milliseconds; requests older than five minutes are
refused. A notification body is a JSON array of events; a contact merge is
`subscriptionType: "contact.merge"` with `primaryObjectId`, `mergedObjectIds` and
`newObjectId` (set when the merge made a new record).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from synchub.core.errors import SignatureError, ValidationError

TOLERANCE_MS = 300_000
MERGE_TYPES = {"contact.merge": "customer"}  # HubSpot merge subscription -> canonical entity


def signature_v3(secret: str, *, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """The `X-HubSpot-Signature-v3` value HubSpot sends for a request."""
    message = method.encode() + uri.encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_v3(
    *,
    secrets: list[str],
    method: str,
    uris: list[str],
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    now_ms: int,
) -> None:
    """Raise SignatureError unless one secret signed these bytes for one of `uris` (the URL
    as received, and as published when a proxy sits in front) within the tolerance."""
    if not signature or not timestamp:
        raise SignatureError("X-HubSpot-Signature-v3 or X-HubSpot-Request-Timestamp missing")
    if not timestamp.isdigit():
        raise SignatureError("X-HubSpot-Request-Timestamp is not milliseconds")
    if now_ms - int(timestamp) > TOLERANCE_MS:
        raise SignatureError("the request is older than five minutes")
    for secret in secrets:
        for uri in dict.fromkeys(uris):
            expected = signature_v3(secret, method=method, uri=uri, body=body, timestamp=timestamp)
            if hmac.compare_digest(expected.encode(), signature.encode()):
                return
    raise SignatureError("no signature matched")


@dataclass(frozen=True)
class HubSpotEvent:
    """One event of a HubSpot notification batch."""

    event_id: str
    subscription_type: str
    object_id: str
    raw: dict[str, Any]
    primary_id: str | None = None
    merged_ids: list[str] = field(default_factory=list)
    new_id: str | None = None

    @property
    def merge_entity(self) -> str | None:
        """The canonical entity a merge event is about, or None for other events."""
        return MERGE_TYPES.get(self.subscription_type)


def _id(value: Any) -> str | None:
    return None if value is None else str(value)


def parse_events(body: bytes) -> list[HubSpotEvent]:
    """The events of one notification (ValidationError if it is not HubSpot's shape)."""
    try:
        items = json.loads(body)
    except ValueError as exc:
        raise ValidationError("the notification is not JSON") from exc
    if not isinstance(items, list):
        raise ValidationError("a HubSpot notification is a JSON array of events")
    events = []
    for item in items:
        if not isinstance(item, dict) or "eventId" not in item:
            raise ValidationError("every HubSpot event has an eventId")
        merged = item.get("mergedObjectIds") or []
        events.append(
            HubSpotEvent(
                event_id=str(item["eventId"]),
                subscription_type=str(item.get("subscriptionType", "")),
                object_id=str(item.get("objectId", "")),
                raw=item,
                primary_id=_id(item.get("primaryObjectId")),
                merged_ids=[str(m) for m in merged],
                new_id=_id(item.get("newObjectId")),
            )
        )
        if events[-1].merge_entity and (events[-1].primary_id is None or not merged):
            raise ValidationError("a merge event names primaryObjectId and mergedObjectIds")
    return events
