"""Idempotency-Key parsing and request fingerprints. Pure."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from synchub.core.errors import ValidationError

_TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,255}")
_SF_STRING = re.compile(r'"((?:[\x20-\x21\x23-\x5b\x5d-\x7e]|\\["\\]){1,255})"')
API_VERSION = "v1"


class IdempotencyKeyError(ValidationError):
    """The Idempotency-Key header is missing where required, repeated or malformed (400)."""

    code = "invalid_idempotency_key"


def parse_key(values: list[str], *, required: bool) -> str | None:
    """The key from the header values: an RFC 8941 sf-string or a bare token."""
    if not values:
        if required:
            raise IdempotencyKeyError("this endpoint needs an Idempotency-Key header")
        return None
    if len(values) > 1:
        raise IdempotencyKeyError("send one Idempotency-Key header, not several")
    value = values[0].strip()
    quoted = _SF_STRING.fullmatch(value)
    if quoted:
        return re.sub(r"\\(.)", r"\1", quoted.group(1))
    if _TOKEN.fullmatch(value):
        return value
    raise IdempotencyKeyError(
        'Idempotency-Key must be a quoted string ("...") or 1-255 of A-Z a-z 0-9 . _ : -'
    )


def fingerprint(method: str, path: str, body: Any) -> str:
    """SHA-256 of method, path, API version and the canonical JSON body (sorted keys)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    text = "\n".join((method.upper(), path, API_VERSION, canonical))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Scope:
    """Whose key this is: (client, method, route template, key)."""

    client_id: str
    method: str
    route: str
    key: str

    def lock_id(self) -> int:
        """A stable signed 64-bit number for database advisory locks."""
        digest = hashlib.sha256("\x1f".join((self.client_id, self.method, self.route,
                                             self.key)).encode()).digest()  # fmt: skip
        return int.from_bytes(digest[:8], "big", signed=True)
