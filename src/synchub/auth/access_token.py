"""Access tokens as JWS compact serialisations (RFC 9068): signing, reading, checking."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key

from synchub.core.errors import AuthenticationError

# Signature algorithms we accept; "none" and every HMAC algorithm are never on this list.
ALLOWED_ALGORITHMS = frozenset({"ES256", "RS256"})
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - the JWT typ of RFC 9068, not a credential
_MAX_TOKEN_CHARS = 4096
_REFUSED_HEADERS = ("crit", "b64")  # we never set them; RFC 7797 would change what is signed


@dataclass(frozen=True)
class UnverifiedToken:
    """A parsed token whose signature has not been checked yet: trust nothing in it."""

    header: Mapping[str, object]
    claims: Mapping[str, object]
    compact: jws.CompactSignature


def new_token_id() -> str:
    """A random `jti` (128 bits)."""
    return secrets.token_urlsafe(16)


def sign_access_token(claims: Mapping[str, object], *, key: Key, kid: str, alg: str) -> str:
    """Sign claims as an at+jwt access token with the key `kid`."""
    header = {"typ": ACCESS_TOKEN_TYPE, "alg": alg, "kid": kid}
    return jwt.encode(header, dict(claims), key, algorithms=[alg])


def read_access_token(token: str) -> UnverifiedToken:
    """Parse a compact JWS into header and claims without checking anything else."""
    if not token or len(token) > _MAX_TOKEN_CHARS or not token.isascii():
        raise AuthenticationError("malformed token")
    try:
        compact = jws.extract_compact(token.encode("ascii"))
        header = compact.headers()
        claims = json.loads(compact.payload)
    except (JoseError, ValueError, TypeError) as exc:
        raise AuthenticationError("malformed token") from exc
    if not isinstance(claims, dict) or any(name in header for name in _REFUSED_HEADERS):
        raise AuthenticationError("malformed token")
    return UnverifiedToken(header=header, claims=claims, compact=compact)


def has_valid_signature(token: UnverifiedToken, key: Key, alg: str) -> bool:
    """Whether `key` made the token's signature with `alg`, an allowed algorithm."""
    if alg not in ALLOWED_ALGORITHMS or token.header.get("alg") != alg:
        return False
    try:
        return jws.validate_compact(token.compact, key, algorithms=[alg])
    except (JoseError, ValueError, TypeError):
        return False
