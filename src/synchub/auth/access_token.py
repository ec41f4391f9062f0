"""Access tokens as JWS compact serialisations (RFC 9068): signing, reading, checking, and
the two per-process memories that keep checking cheap (ADR 0015): tokens whose signature and
claims already checked out, and recent "not revoked" answers."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key

from synchub.auth.model import AccessTokenClaims, SigningKey
from synchub.core.errors import AuthenticationError

# Signature algorithms we accept; "none" and every HMAC algorithm are never on this list.
ALLOWED_ALGORITHMS = frozenset({"ES256", "RS256"})
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - the JWT typ of RFC 9068, not a credential
_MAX_TOKEN_CHARS = 4096
_REFUSED_HEADERS = ("crit", "b64")  # we never set them; RFC 7797 would change what is signed
# Longest a "not revoked" answer may be trusted without asking the store again (ADR 0015).
MAX_REVOCATION_CACHE_TTL = timedelta(seconds=2)
_MAX_REMEMBERED = 4096  # entries per memory; the oldest are forgotten first


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


def _token_digest(token: str) -> bytes:
    # Remember tokens by digest: live bearer tokens are not kept in memory longer than a request.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class CheckedToken:
    """A token whose type, issuer, audience, signature and claims checked out, and its key."""

    kid: str
    alg: str
    public_jwk: Mapping[str, str]  # the key that verified it (a kid is its thumbprint anyway)
    claims: AccessTokenClaims

    def is_signed_by(self, key: SigningKey) -> bool:
        """Whether `key` is the very key this token was verified with."""
        return key.kid == self.kid and key.alg == self.alg and key.public_jwk == self.public_jwk


class CheckedTokens:
    """Tokens that passed every check that depends only on the token and its key, by digest.

    A token never changes and neither does a key, so a token that verified once verifies
    again as long as the same key is still published. Callers re-check the key, the time and
    revocation on every use. Only successes are remembered, so made-up tokens cannot fill
    it; the oldest entries are forgotten first.
    """

    def __init__(self, *, max_entries: int = _MAX_REMEMBERED) -> None:
        self._max = max_entries
        self._entries: dict[bytes, CheckedToken] = {}
        self._lock = threading.Lock()

    def find(self, token: str) -> CheckedToken | None:
        """What an earlier check of exactly this token found, if it passed."""
        return self._entries.get(_token_digest(token))

    def add(self, token: str, checked: CheckedToken) -> None:
        """Remember a token that passed its checks."""
        digest = _token_digest(token)
        with self._lock:
            if digest not in self._entries and len(self._entries) >= self._max:
                del self._entries[next(iter(self._entries))]
            self._entries[digest] = checked


class RecentlyUsable:
    """Recent "neither the token nor its client is revoked" answers, each trusted for `ttl`.

    An answer counts from the moment its store read began, so a revocation committed at R is
    seen by every check that starts after R + ttl, in any process. A revocation in this
    process (`forget`) bumps a generation, so an answer whose read began before it is not
    stored, and marks the token or client as unsure until `until`: its revocation is not
    committed yet when `forget` runs, so a read made before the commit would still say
    "usable", and no such answer is trusted. Unsure marks are bounded like the answers.
    A clock that steps backwards makes an answer stale, never longer-lived. A ttl of zero
    remembers nothing.
    """

    def __init__(self, ttl: timedelta, *, max_entries: int = _MAX_REMEMBERED) -> None:
        if not timedelta(0) <= ttl <= MAX_REVOCATION_CACHE_TTL:
            raise ValueError(f"the revocation cache ttl must be 0 to {MAX_REVOCATION_CACHE_TTL}")
        self.ttl = ttl
        self._max = max_entries
        self._read_at: dict[tuple[str, str], datetime] = {}
        self._unsure: dict[tuple[str, str], datetime] = {}  # ("token"|"client", id) -> until
        self._generation = 0
        self._lock = threading.Lock()

    @property
    def generation(self) -> int:
        """Read before asking the store; pass to `remember` with the answer."""
        return self._generation

    def is_usable(self, token_id: str, client_id: str, now: datetime) -> bool:
        """Whether a "usable" answer for this token read less than `ttl` ago is remembered."""
        read_at = self._read_at.get((token_id, client_id))
        if read_at is None or not read_at <= now < read_at + self.ttl:
            return False
        return not self._is_unsure(token_id, client_id, now)

    def _is_unsure(self, token_id: str, client_id: str, now: datetime) -> bool:
        for entry in (("token", token_id), ("client", client_id)):
            until = self._unsure.get(entry)
            if until is not None and now < until:
                return True
        return False

    def remember(
        self, token_id: str, client_id: str, *, read_at: datetime, generation: int
    ) -> None:
        """Trust a "usable" answer whose store read began at `read_at`."""
        if not self.ttl:
            return
        entry = (token_id, client_id)
        with self._lock:
            if generation != self._generation:
                return  # something was revoked here while the read ran: do not trust it
            if self._is_unsure(token_id, client_id, read_at):
                return  # revoked here, perhaps not committed when the store was read
            if entry not in self._read_at and len(self._read_at) >= self._max:
                del self._read_at[next(iter(self._read_at))]
            self._read_at[entry] = read_at

    def forget(
        self,
        *,
        until: datetime,
        token_id: str | None = None,
        client_id: str | None = None,
        now: datetime,
    ) -> None:
        """A revocation in this process: drop every answer, and trust none about this token
        or client until `until` (by then no token it covers is accepted anyway)."""
        with self._lock:
            self._generation += 1
            self._read_at.clear()
            self._unsure = {k: v for k, v in self._unsure.items() if v > now}
            marks = [("token", token_id), ("client", client_id)]
            for key in [(kind, ident) for kind, ident in marks if ident is not None]:
                if key not in self._unsure and len(self._unsure) >= self._max:
                    del self._unsure[next(iter(self._unsure))]
                self._unsure[key] = max(until, self._unsure.get(key, until))
