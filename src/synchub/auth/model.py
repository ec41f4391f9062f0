"""Who is calling and what they may do. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from urllib.parse import urlsplit

from synchub.core.errors import AuthenticationError, PermanentError

# One scope per resource and action. Every /v1 operation declares exactly one of these.
SCOPES: dict[str, str] = {
    "read:customers": "Read golden customer records.",
    "write:customers": "Create and update customers (fields the product owns).",
    "read:accounts": "Read accounts (companies).",
    "write:accounts": "Create and update accounts (fields the product owns).",
    "read:subscriptions": "Read subscriptions.",
    "read:plans": "Read plans.",
    "read:invoices": "Read invoices and their lines.",
    "read:payments": "Read payments.",
    "read:contacts": "Read contact persons.",
    "read:refunds": "Read refunds.",
    "read:events": "Read canonical events.",
    "read:deliveries": "Read deliveries and dead letters.",
    "admin:deliveries": "Replay deliveries and dead letters.",
    "read:connections": "Read connections and their status.",
    "admin:audit": "Read the audit log.",
    "read:usage": "Read your own fair-use usage (with admin:audit: every client's in the "
    "workspace).",
    "read:webhooks": "Read partner webhook endpoints and their delivery logs.",
    "admin:webhooks": "Register, change and delete webhook endpoints; rotate their secrets.",
    "read:metrics": "Scrape the operator metrics at GET /metrics (not a /v1 resource).",
    "read:matches": "Read match candidates (possible duplicate customers awaiting review).",
    "admin:matches": "Confirm or reject match candidates (confirming merges golden records).",
    "read:drift": "Read a customer's drift: reads every connected system's current view now.",
    "read:conflicts": "Read conflict records (a non-owner disagreeing with a field's owner).",
}


class InvalidAuthorizationError(PermanentError):
    """The request's credentials are ambiguous, e.g. two Authorization headers (HTTP 400,
    RFC 6750 §3.1 invalid_request): refused rather than guessing which one counts."""

    code = "invalid_request"


@dataclass(frozen=True)
class Principal:
    """An authenticated API caller: an OAuth client acting in one workspace."""

    client_id: str
    workspace: str
    scopes: frozenset[str]
    token_id: str | None = None  # the access token's jti

    def has_scope(self, scope: str) -> bool:
        """Whether the caller was granted a scope."""
        return scope in self.scopes


def parse_scope(text: str | None) -> frozenset[str]:
    """A space-separated scope string as a set (empty for None)."""
    return frozenset(part for part in (text or "").split(" ") if part)


# --- The authorization server's rules: clients, scopes, signing keys, access tokens ---

ACCESS_TOKEN_LIFETIME = timedelta(minutes=10)
MAX_ACCESS_TOKEN_LIFETIME = timedelta(minutes=15)
CLOCK_SKEW = timedelta(seconds=60)
# Verifiers may cache our JWKS this long; a replaced key stays published for the longest
# token lifetime plus this, so every token it signed can still be checked.
JWKS_CACHE_TTL = timedelta(hours=1)
KEY_RETIREMENT_DELAY = MAX_ACCESS_TOKEN_LIFETIME + JWKS_CACHE_TTL
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})  # RFC 9068 §4, any case
_WORKSPACE_ID = re.compile(r"[a-z0-9_-]{1,40}")
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class ApiClient:
    """A confidential OAuth client of the /v1 API, bound to one workspace (no secret here)."""

    client_id: str
    workspace: str
    name: str
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def is_revoked(self) -> bool:
        """Whether the client was revoked (it can no longer get or use tokens)."""
        return self.revoked_at is not None


@dataclass(frozen=True)
class SigningKey:
    """A token-signing key's public half and schedule; the private half stays encrypted."""

    kid: str
    alg: str
    public_jwk: dict[str, str]
    created_at: datetime
    activates_at: datetime
    retired_at: datetime | None = None

    def is_published(self, now: datetime) -> bool:
        """Whether the key is in the JWKS and verifies tokens at `now`."""
        return self.retired_at is None or now < self.retired_at

    def is_signing_candidate(self, now: datetime) -> bool:
        """Whether the key may sign at `now` (the newest such key does)."""
        return self.activates_at <= now and self.is_published(now)


@dataclass(frozen=True)
class TokenGrant:
    """An issued access token, as the token endpoint describes it."""

    access_token: str = field(repr=False)
    token_id: str
    scope: str
    expires_in: int
    expires_at: datetime


class RevocationOutcome(Enum):
    """What a revocation request did (RFC 7009)."""

    REVOKED = "revoked"
    NOT_ACTIVE = "not_active"  # unknown, malformed, expired or already revoked: nothing to do
    NOT_OWNER = "not_owner"  # issued to another client: refused (RFC 7009 §2.1)


@dataclass(frozen=True)
class AccessTokenClaims:
    """The checked claims of one of our access tokens (iat/nbf/exp are Unix seconds)."""

    issuer: str
    audience: tuple[str, ...]
    client_id: str
    workspace: str
    scopes: frozenset[str]
    token_id: str
    iat: int
    nbf: int
    exp: int

    def to_principal(self) -> Principal:
        """The API caller this token stands for."""
        return Principal(self.client_id, self.workspace, self.scopes, token_id=self.token_id)

    def to_introspection(self) -> dict[str, object]:
        """The RFC 7662 answer for this (active) token."""
        audience: str | list[str] = (
            self.audience[0] if len(self.audience) == 1 else list(self.audience)
        )
        return {
            "active": True,
            "scope": format_scope(self.scopes),
            "client_id": self.client_id,
            "sub": self.client_id,
            "exp": self.exp,
            "iat": self.iat,
            "iss": self.issuer,
            "aud": audience,
            "jti": self.token_id,
            "token_type": "Bearer",
            "workspace": self.workspace,
        }


def unknown_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes that are not in SCOPES, sorted."""
    return sorted({scope for scope in scopes if scope not in SCOPES})


def format_scope(scopes: Iterable[str]) -> str:
    """Scopes as the RFC 6749 space-separated string, in a stable order."""
    return " ".join(sorted(set(scopes)))


def grant_scope(requested: frozenset[str], allowed: frozenset[str]) -> frozenset[str] | None:
    """The scopes to grant: all allowed ones for an empty request, the request if allowed.

    None means invalid_scope: the request names a scope the client does not hold (or that
    no longer exists), or the client holds no usable scope at all.
    """
    usable = frozenset(scope for scope in allowed if scope in SCOPES)
    granted = requested or usable
    if not granted or not granted <= usable:
        return None
    return granted


def is_valid_workspace_id(workspace: str) -> bool:
    """Whether a workspace id has the register's shape: 1-40 of a-z, 0-9, '_' and '-'."""
    return _WORKSPACE_ID.fullmatch(workspace) is not None


def workspace_kind(workspace: str) -> str:
    """'sandbox' for a workspace named sandbox or sandbox-…, else 'live'."""
    return "sandbox" if workspace == "sandbox" or workspace.startswith("sandbox-") else "live"


def issuer_problem(issuer: str) -> str | None:
    """Why a URL cannot be our RFC 8414 issuer, or None when it can."""
    parts = urlsplit(issuer)
    if not parts.scheme or not parts.hostname or "?" in issuer or "#" in issuer:
        return "the issuer must be an absolute URL without a query or fragment"
    if issuer.endswith("/"):
        return "the issuer must not end with '/'"
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS):
        return None
    return "the issuer must use https (plain http only on a loopback address)"


def audience_for(issuer: str) -> str:
    """The audience of our access tokens: the /v1 API under the issuer."""
    return f"{issuer}/v1"


def access_token_claims(
    client: ApiClient,
    *,
    issuer: str,
    scopes: frozenset[str],
    token_id: str,
    issued_at: datetime,
    lifetime: timedelta,
) -> dict[str, object]:
    """The RFC 9068 claims of an access token for a client-credentials grant."""
    iat = int(issued_at.timestamp())
    return {
        "iss": issuer,
        "sub": client.client_id,
        "aud": audience_for(issuer),
        "exp": iat + int(lifetime.total_seconds()),
        "nbf": iat,
        "iat": iat,
        "jti": token_id,
        "client_id": client.client_id,
        "scope": format_scope(scopes),
        "workspace": client.workspace,
    }


def check_token_type(header: Mapping[str, object]) -> None:
    """Refuse a JWT whose `typ` is not at+jwt (RFC 9068 §4)."""
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
        raise AuthenticationError("not an access token (typ)")


def check_issuer(claims: Mapping[str, object], issuer: str) -> None:
    """Refuse a token from another issuer."""
    if claims.get("iss") != issuer:
        raise AuthenticationError("wrong issuer")


def check_audience(claims: Mapping[str, object], audience: str) -> None:
    """Refuse a token not meant for us (`aud` is a string or a list of strings)."""
    aud = claims.get("aud")
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        raise AuthenticationError("wrong audience")


def _text_claim(claims: Mapping[str, object], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise AuthenticationError("malformed claims")
    return value


def _time_claim(claims: Mapping[str, object], name: str) -> int:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise AuthenticationError("malformed claims")
    return value


def _audience_claim(claims: Mapping[str, object]) -> tuple[str, ...]:
    aud = claims.get("aud")
    audience = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not audience or not all(isinstance(a, str) for a in audience):
        raise AuthenticationError("malformed claims")
    return tuple(str(a) for a in audience)


def parse_access_token_claims(claims: Mapping[str, object]) -> AccessTokenClaims:
    """Typed claims of a signature-checked token; malformed or overlong tokens are refused."""
    parsed = AccessTokenClaims(
        issuer=_text_claim(claims, "iss"),
        audience=_audience_claim(claims),
        client_id=_text_claim(claims, "client_id"),
        workspace=_text_claim(claims, "workspace"),
        scopes=parse_scope(_text_claim(claims, "scope")),
        token_id=_text_claim(claims, "jti"),
        iat=_time_claim(claims, "iat"),
        nbf=_time_claim(claims, "nbf"),
        exp=_time_claim(claims, "exp"),
    )
    if _text_claim(claims, "sub") != parsed.client_id:
        raise AuthenticationError("malformed claims")
    if parsed.exp - parsed.iat > MAX_ACCESS_TOKEN_LIFETIME.total_seconds():
        raise AuthenticationError("token lifetime too long")
    return parsed


def check_token_time(
    claims: AccessTokenClaims, now: datetime, *, skew: timedelta = CLOCK_SKEW
) -> None:
    """Refuse an expired or not-yet-valid token, allowing `skew` of clock difference."""
    moment, leeway = now.timestamp(), skew.total_seconds()
    if moment >= claims.exp + leeway:
        raise AuthenticationError("token expired")
    if moment < max(claims.nbf, claims.iat) - leeway:
        raise AuthenticationError("token not yet valid")


def pick_signing_key(keys: Iterable[SigningKey], now: datetime) -> SigningKey | None:
    """The key that signs at `now`: the newest active, published one.

    Between keys activated at the same instant, the one not yet scheduled for retirement
    is the newer: rotation schedules every older key's retirement.
    """
    candidates = [key for key in keys if key.is_signing_candidate(now)]
    return max(
        candidates,
        key=lambda k: (k.activates_at, k.retired_at is None, k.created_at, k.kid),
        default=None,
    )


def jwks_document(keys: Iterable[SigningKey], now: datetime) -> dict[str, list[dict[str, str]]]:
    """The RFC 7517 JWK Set of every key published at `now`, newest first."""
    published = sorted(
        (key for key in keys if key.is_published(now)),
        key=lambda k: (k.activates_at, k.created_at, k.kid),
        reverse=True,
    )
    return {"keys": [dict(key.public_jwk) for key in published]}
