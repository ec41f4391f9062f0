"""Standard Webhooks v1 signing and verification (STANDARDS.md §4)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from synchub.core.errors import SignatureError

TOLERANCE_SECONDS = 300


def new_secret() -> str:
    """A fresh endpoint secret: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _key(secret: str) -> bytes:
    if not secret.startswith("whsec_"):
        raise ValueError("Standard Webhooks secrets start with whsec_")
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(body: bytes, *, msg_id: str, timestamp: int, secrets_: list[str]) -> str:
    """The `webhook-signature` header: one `v1,<base64>` entry per secret, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    entries = []
    for secret in secrets_:
        digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
        entries.append("v1," + base64.b64encode(digest).decode("ascii"))
    return " ".join(entries)


def headers_for(body: bytes, *, msg_id: str, timestamp: int, secrets_: list[str]) -> dict[str, str]:
    """The three Standard Webhooks headers for exactly these body bytes."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(body, msg_id=msg_id, timestamp=timestamp, secrets_=secrets_),
    }


def verify(body: bytes, headers: dict[str, str], *, secret: str, now: int) -> str:
    """Verify a received webhook; return its webhook-id or raise SignatureError."""
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp", "")
    signature = headers.get("webhook-signature", "")
    if not msg_id or not stamp.isdigit() or not signature:
        raise SignatureError("missing Standard Webhooks headers")
    if abs(now - int(stamp)) > TOLERANCE_SECONDS:
        raise SignatureError("webhook timestamp outside the tolerance window")
    expected = sign(body, msg_id=msg_id, timestamp=int(stamp), secrets_=[secret]).encode()
    if not any(hmac.compare_digest(expected, s.encode()) for s in signature.split(" ")):
        raise SignatureError("no webhook signature matches")
    return msg_id
