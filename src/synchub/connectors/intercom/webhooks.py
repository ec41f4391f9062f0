"""Intercom webhook notifications: the `X-Hub-Signature` check and the envelope. Pure.

Intercom signs each notification with the app's client secret: `X-Hub-Signature:
sha1=<hex HMAC-SHA1 of the raw body>` (FACTS.md §5; older apps had a per-subscription
`hub_secret`, which verifies the same way). A notification is one JSON object, `{"type":
"notification_event", "id": "notif_…", "topic": …, "data": {"item": {…}}, "created_at": …}`.
A lead merged into a user arrives as `contact.merged` whose item is the surviving contact; the
merged-away ids are not in it (they come from the contact's merge history).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from synchub.core.errors import SignatureError, ValidationError

MERGE_TOPICS = {"contact.merged": "customer"}  # Intercom merge topic -> canonical entity
# Topics whose item is a contact synchub reads as a customer observation.
CONTACT_TOPICS = frozenset(
    {
        "contact.user.created",
        "contact.user.updated",
        "contact.lead.created",
        "contact.lead.updated",
        "contact.lead.signed_up",
        "contact.email.updated",
        "contact.archived",
        "contact.unarchived",
        "contact.deleted",
    }
)
DELETING_TOPICS = frozenset({"contact.deleted", "contact.archived"})


def sign(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature` value Intercom sends for a body."""
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def verify_signature(*, secrets: list[str], body: bytes, header: str | None) -> None:
    """Raise SignatureError unless one secret signed these exact bytes."""
    if not header or not header.startswith("sha1="):
        raise SignatureError("X-Hub-Signature missing or not sha1")
    given = header.removeprefix("sha1=").strip().lower().encode()
    matched = False
    for secret in secrets:  # compare against every secret: no early exit on a match
        matched |= hmac.compare_digest(sign(secret, body).removeprefix("sha1=").encode(), given)
    if not matched:
        raise SignatureError("no signature matched")


@dataclass(frozen=True)
class Notification:
    """One Intercom webhook notification."""

    id: str
    topic: str
    item: dict[str, Any]
    created_at: int
    raw: dict[str, Any]

    @property
    def merge_entity(self) -> str | None:
        """The canonical entity a merge notification is about, else None."""
        return MERGE_TOPICS.get(self.topic)

    @property
    def is_contact_change(self) -> bool:
        """Whether the item is a contact to observe (created, updated, deleted...)."""
        return self.topic in CONTACT_TOPICS


def parse_notification(body: bytes) -> Notification:
    """The notification in a body (ValidationError when it is not Intercom's shape)."""
    try:
        raw = json.loads(body)
    except ValueError as exc:
        raise ValidationError("the notification is not JSON") from exc
    if not isinstance(raw, dict) or raw.get("type") != "notification_event":
        raise ValidationError("an Intercom notification has type notification_event")
    if not isinstance(raw.get("id"), str) or not raw["id"]:
        raise ValidationError("an Intercom notification has an id")
    data = raw.get("data")
    item = data.get("item") if isinstance(data, dict) else None
    if not isinstance(raw.get("topic"), str) or not isinstance(item, dict):
        raise ValidationError("an Intercom notification has a topic and data.item")
    if raw["topic"] in MERGE_TOPICS and not isinstance(item.get("id"), str):
        raise ValidationError("a contact.merged notification names the surviving contact's id")
    created = raw.get("created_at")
    return Notification(
        id=raw["id"],
        topic=raw["topic"],
        item=item,
        created_at=int(created) if isinstance(created, int) else 0,
        raw=raw,
    )
