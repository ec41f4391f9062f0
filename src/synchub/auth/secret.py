"""Client secrets: made once, shown once, kept only as a salted scrypt hash."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import threading
from collections import OrderedDict

SECRET_PREFIX = "shs_"  # noqa: S105 - a public prefix, not a credential
# scrypt cost: about 50 ms and 16 MiB per check. Secrets are 256 random bits, so the cost only
# has to blunt a stolen table, not protect a guessable password.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32
_MAX_N, _MAX_R, _MAX_P = 2**16, 16, 4  # refuse absurd costs from a damaged row
_MAXMEM = 256 * 1024 * 1024  # 128 * r * n bytes at the limits above, with room to spare


def new_client_secret() -> str:
    """A new client secret: "shs_" and 43 URL-safe characters (256 random bits)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """The stored form of a secret: "scrypt$n$r$p$salt_b64$hash_b64" with a random salt."""
    if "\x00" in secret:
        raise ValueError("a secret cannot contain NUL")
    salt = os.urandom(_SALT_BYTES)
    digest = _scrypt(secret, salt, n=n, r=r, p=p)
    return "$".join(("scrypt", str(n), str(r), str(p), _b64(salt), _b64(digest)))


def verify_secret(secret: str, stored: str) -> bool:
    """Whether a secret matches its stored hash (constant-time; False for a malformed hash)."""
    parsed = _parse(stored)
    # scrypt keys HMAC with the secret, and HMAC pads keys with zero bytes: "s" and "s\0"
    # would hash alike. Our secrets never hold NUL, so refuse it outright.
    if parsed is None or "\x00" in secret:
        return False
    n, r, p, salt, expected = parsed
    return hmac.compare_digest(_scrypt(secret, salt, n=n, r=r, p=p), expected)


def _scrypt(secret: str, salt: bytes, *, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=_MAXMEM,
        dklen=_HASH_BYTES,
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(x.isdigit() for x in parts[1:4]):
        return None
    n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
    if not (1 < n <= _MAX_N and n & (n - 1) == 0 and 0 < r <= _MAX_R and 0 < p <= _MAX_P):
        return None
    try:
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except binascii.Error:
        return None
    return (n, r, p, salt, digest) if salt and len(digest) == _HASH_BYTES else None


class VerifiedSecrets:
    """Recent successful secret checks, so repeat token requests skip the scrypt cost.

    Holds an HMAC (under a per-process random key) of each secret next to the stored hash it
    matched; a changed hash or a different secret misses. Revocation is not cached: callers
    read the client row on every request before asking.
    """

    def __init__(self, *, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._key = os.urandom(32)
        self._entries: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def _fingerprint(self, secret: str) -> bytes:
        return hmac.new(self._key, secret.encode("utf-8"), hashlib.sha256).digest()

    def is_known(self, client_id: str, stored: str, secret: str) -> bool:
        """Whether this secret was verified against this stored hash before."""
        with self._lock:
            entry = self._entries.get(client_id)
            if entry is not None:
                self._entries.move_to_end(client_id)
        if entry is None or entry[0] != stored:
            return False
        return hmac.compare_digest(entry[1], self._fingerprint(secret))

    def remember(self, client_id: str, stored: str, secret: str) -> None:
        """Record a successful check, evicting the least recently used entry when full."""
        fingerprint = self._fingerprint(secret)
        with self._lock:
            self._entries[client_id] = (stored, fingerprint)
            self._entries.move_to_end(client_id)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def forget(self, client_id: str) -> None:
        """Drop a client's entry (after revocation)."""
        with self._lock:
            self._entries.pop(client_id, None)
