"""The hub's OAuth 2.0 authorization server: clients, signing keys and access tokens.

Client credentials only (RFC 6749 §4.4), JWT access tokens (RFC 9068), revocation (RFC 7009)
and introspection (RFC 7662). Methods take the caller's open Connection and never commit.
Every grant, refusal, client change and key change goes to the `audit` callback as keyword
arguments: conn, action, actor, outcome, target, workspace (ids only, never secrets).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from synchub.auth import store
from synchub.auth.access_token import (
    ALLOWED_ALGORITHMS,
    CheckedToken,
    CheckedTokens,
    RecentlyUsable,
    has_valid_signature,
    new_token_id,
    read_access_token,
    sign_access_token,
)
from synchub.auth.keyring import KeyRing, reading
from synchub.auth.model import (
    ACCESS_TOKEN_LIFETIME,
    CLOCK_SKEW,
    MAX_ACCESS_TOKEN_LIFETIME,
    AccessTokenClaims,
    ApiClient,
    Principal,
    RevocationOutcome,
    SigningKey,
    TokenGrant,
    access_token_claims,
    audience_for,
    check_audience,
    check_issuer,
    check_token_time,
    check_token_type,
    format_scope,
    grant_scope,
    is_valid_workspace_id,
    issuer_problem,
    parse_access_token_claims,
    parse_scope,
    unknown_scopes,
    workspace_kind,
)
from synchub.auth.secret import VerifiedSecrets, hash_secret, new_client_secret, verify_secret
from synchub.core.clock import Clock, from_unix
from synchub.core.errors import (
    AuthenticationError,
    ConfigError,
    FieldProblem,
    NotFoundError,
    ValidationError,
)
from synchub.core.ids import encode_ulid
from synchub.db import Database

Audit = Callable[..., None]
CLIENT_PREFIX = "cli_"
CLIENT_REFUSED = "client authentication failed"
REVOCATION_CACHE_TTL = timedelta(seconds=1)  # the bound on seeing another process's revocation
_CLIENT_ID = re.compile(r"cli_[0-9A-HJKMNP-TV-Z]{26}")
_MAX_NAME = 200


class AuthorizationServer:
    """Issues, checks, revokes and describes the hub's access tokens.

    Holds the key ring (public keys cached by kid), recent successful secret checks (so a
    repeat token request skips scrypt), tokens that already passed their signature and claim
    checks, and "not revoked" answers trusted for `revocation_cache_ttl` (ADR 0015: a
    revocation made by another process is honoured within that time; one made by this
    process at once). `verify_token` may run without a connection; it then reads in its own
    read-only transaction.
    """

    def __init__(
        self,
        db: Database,
        *,
        kek: bytes,
        clock: Clock,
        issuer: str,
        audit: Audit,
        token_lifetime: timedelta = ACCESS_TOKEN_LIFETIME,
        revocation_cache_ttl: timedelta = REVOCATION_CACHE_TTL,
    ) -> None:
        if not timedelta(0) < token_lifetime <= MAX_ACCESS_TOKEN_LIFETIME:
            raise ConfigError("access tokens must live more than 0 s and at most 15 minutes")
        problem = issuer_problem(issuer)
        if problem is not None:
            raise ConfigError(f"{problem}: {issuer!r}")
        self.issuer = issuer
        self.audience = audience_for(issuer)
        self.token_lifetime = token_lifetime
        self.keys = KeyRing(db, kek=kek, clock=clock, audit=audit)
        self._db = db
        self._clock = clock
        self._audit = audit
        self._secrets = VerifiedSecrets()
        self._checked = CheckedTokens()
        try:
            self._usable = RecentlyUsable(revocation_cache_ttl)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc

    # --- clients ---

    def create_client(
        self, conn: Connection, *, name: str, scopes: Iterable[str], workspace: str, actor: str
    ) -> tuple[str, str]:
        """Register a client; returns (client_id, client_secret). The secret is never stored."""
        wanted = frozenset(scopes)
        _check_client_fields(name=name, scopes=wanted, workspace=workspace)
        now = self._clock.now()
        store.ensure_workspace(conn, workspace, kind=workspace_kind(workspace), now=now)
        client_id = CLIENT_PREFIX + encode_ulid(
            int(now.timestamp() * 1000), int.from_bytes(os.urandom(10), "big")
        )
        secret = new_client_secret()
        client = ApiClient(client_id, workspace, name.strip(), wanted, created_at=now)
        store.insert_client(conn, client, secret_hash=hash_secret(secret))
        self._record(conn, "api_client.created", actor, target=client_id, workspace=workspace)
        return client_id, secret

    def list_clients(self, conn: Connection, *, workspace: str | None = None) -> list[ApiClient]:
        """Every client (revoked ones too), oldest first."""
        return store.list_clients(conn, workspace=workspace)

    def revoke_client(self, conn: Connection, client_id: str, *, actor: str) -> ApiClient:
        """Revoke a client: it gets no new tokens and its issued tokens stop working."""
        found = store.find_client_credential(conn, client_id)
        if found is None:
            raise NotFoundError(f"no client {client_id}")
        client = found[0]
        now = self._clock.now()
        self._secrets.forget(client_id)
        # Tokens issued before this revocation commits (promptly) expire by then.
        until = now + MAX_ACCESS_TOKEN_LIFETIME + CLOCK_SKEW
        self._usable.forget(client_id=client_id, until=until, now=now)
        if client.is_revoked:
            return client
        store.mark_client_revoked(conn, client_id, now=now)
        self._record(
            conn, "api_client.revoked", actor, target=client_id, workspace=client.workspace
        )
        return replace(client, revoked_at=now)

    def authenticate_client(self, conn: Connection, client_id: str, secret: str) -> ApiClient:
        """The client these credentials belong to; AuthenticationError (audited) if none.

        Client ids are not secret (RFC 6749 §2.2), so unknown and revoked clients are refused
        without the scrypt cost; the secret itself is compared in constant time.
        """
        found = store.find_client_credential(conn, client_id)
        reason = "unknown_client"
        if found is not None:
            client, stored = found
            reason = "client_revoked" if client.is_revoked else "wrong_secret"
            if not client.is_revoked and self._is_secret_correct(client_id, stored, secret):
                return client
        # What was sent as a client id is recorded only if it has our id shape: a secret
        # pasted into the wrong field must never reach the audit log.
        actor = client_id if _CLIENT_ID.fullmatch(client_id) else "unrecognised"
        self._record(
            conn,
            "api_client.authentication_failed",
            actor,
            outcome=reason,
            target=None,
            workspace=found[0].workspace if found else None,
        )
        raise AuthenticationError(CLIENT_REFUSED)

    def _is_secret_correct(self, client_id: str, stored: str, secret: str) -> bool:
        if self._secrets.is_known(client_id, stored, secret):
            return True
        if not verify_secret(secret, stored):
            return False
        self._secrets.remember(client_id, stored, secret)
        return True

    # --- tokens ---

    def issue_token(self, conn: Connection, client: ApiClient, scope: str | None) -> TokenGrant:
        """An access token for an authenticated client (RFC 6749 §4.4.3, RFC 9068).

        An empty `scope` asks for all the client's scopes; a scope the client does not hold
        raises ValidationError at /scope (the token endpoint's invalid_scope).
        """
        if client.is_revoked:
            raise AuthenticationError(CLIENT_REFUSED)
        requested = parse_scope(scope)
        granted = grant_scope(requested, client.scopes)
        if granted is None:
            self._record(
                conn,
                "access_token.refused",
                client.client_id,
                outcome="invalid_scope",
                target=None,
                workspace=client.workspace,
            )
            not_held = format_scope(requested - client.scopes) or "(none)"
            raise ValidationError(
                "scope not granted to this client",
                [FieldProblem("/scope", f"not granted: {not_held}")],
            )
        issued_at = from_unix(int(self._clock.now().timestamp()))  # JWT times are whole seconds
        token_id = new_token_id()
        record, private = self.keys.signing_key(conn)
        claims = access_token_claims(
            client,
            issuer=self.issuer,
            scopes=granted,
            token_id=token_id,
            issued_at=issued_at,
            lifetime=self.token_lifetime,
        )
        token = sign_access_token(claims, key=private, kid=record.kid, alg=record.alg)
        self._record(
            conn,
            "access_token.issued",
            client.client_id,
            target=token_id,
            workspace=client.workspace,
        )
        return TokenGrant(
            access_token=token,
            token_id=token_id,
            scope=format_scope(granted),
            expires_in=int(self.token_lifetime.total_seconds()),
            expires_at=issued_at + self.token_lifetime,
        )

    def verify_token(self, token: str, *, conn: Connection | None = None) -> Principal:
        """The caller an access token stands for; AuthenticationError with a short reason.

        Checks, in this order: typ is at+jwt, iss is us, aud holds our API, the signature
        by one of our published keys with an allowed algorithm, exp and nbf (60 s skew),
        and finally that neither the token nor its client was revoked (a "no" read within
        the revocation cache ttl may stand in for a read, ADR 0015).
        """
        claims = self._checked_claims(token, conn, check_revocation=True, fresh=False)
        return claims.to_principal()

    def principal_from_memory(self, token: str) -> Principal | None:
        """The caller, if every check of `token` can be answered from memory; else None.

        Never reads the store, so it suits an event loop; None means "call verify_token",
        which gives the reason for a refusal.
        """
        checked = self._checked.find(token)
        if checked is None:
            return None
        now = self._clock.now()
        found = self.keys.cached_verification_key(checked.kid, now)
        if found is None or not checked.is_signed_by(found.record):
            return None
        claims = checked.claims
        try:
            check_token_time(claims, now)
        except AuthenticationError:
            return None
        if not self._usable.is_usable(claims.token_id, claims.client_id, now):
            return None
        return claims.to_principal()

    def revoke(
        self, conn: Connection, token: str, *, requester: str | None = None
    ) -> RevocationOutcome:
        """Revoke an access token (RFC 7009); unknown, expired or garbage tokens are ignored.

        With a `requester`, a token issued to another client is refused, not revoked.
        """
        try:
            claims = self._checked_claims(token, conn, check_revocation=False, fresh=True)
        except AuthenticationError:
            return RevocationOutcome.NOT_ACTIVE
        if requester is not None and claims.client_id != requester:
            return RevocationOutcome.NOT_OWNER
        now = self._clock.now()
        store.delete_expired_revocations(conn, before=now)
        # kept until the last moment verify_token could still accept it (exp + skew)
        until = from_unix(claims.exp) + CLOCK_SKEW
        if not store.insert_revoked_token(conn, claims.token_id, expires_at=until):
            return RevocationOutcome.NOT_ACTIVE
        self._usable.forget(token_id=claims.token_id, until=until, now=now)
        self._record(
            conn,
            "access_token.revoked",
            requester or claims.client_id,
            target=claims.token_id,
            workspace=claims.workspace,
        )
        return RevocationOutcome.REVOKED

    def introspect(
        self, conn: Connection, token: str, *, requester: str | None = None
    ) -> dict[str, object]:
        """RFC 7662: the token's claims if active, else exactly {"active": False}.

        With a `requester`, tokens of other clients are reported inactive (no token scanning).
        Revocation is always read from the store here, never from the cache.
        """
        try:
            claims = self._checked_claims(token, conn, check_revocation=True, fresh=True)
        except AuthenticationError:
            return {"active": False}
        if requester is not None and claims.client_id != requester:
            return {"active": False}
        return claims.to_introspection()

    def _checked_claims(
        self, token: str, conn: Connection | None, *, check_revocation: bool, fresh: bool
    ) -> AccessTokenClaims:
        checked = self._checked.find(token)
        if checked is None:
            checked = self._verified(token, conn)
            self._checked.add(token, checked)
        else:  # the token passed before: only its key's publication can have changed
            found = self.keys.verification_key(checked.kid, conn)
            if found is None or not checked.is_signed_by(found.record):
                raise AuthenticationError("unknown signing key")
        claims = checked.claims
        now = self._clock.now()
        check_token_time(claims, now)
        if check_revocation and not self._is_usable(claims, conn, now=now, fresh=fresh):
            raise AuthenticationError("token revoked")
        return claims

    def _verified(self, token: str, conn: Connection | None) -> CheckedToken:
        unverified = read_access_token(token)
        check_token_type(unverified.header)
        check_issuer(unverified.claims, self.issuer)
        check_audience(unverified.claims, self.audience)
        alg, kid = unverified.header.get("alg"), unverified.header.get("kid")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
            raise AuthenticationError("algorithm not allowed")
        found = self.keys.verification_key(kid, conn) if isinstance(kid, str) and kid else None
        if found is None:
            raise AuthenticationError("unknown signing key")
        if alg != found.record.alg or not has_valid_signature(unverified, found.key, alg):
            raise AuthenticationError("bad signature")
        claims = parse_access_token_claims(unverified.claims)
        return CheckedToken(found.record.kid, alg, found.record.public_jwk, claims)

    def _is_usable(
        self, claims: AccessTokenClaims, conn: Connection | None, *, now: datetime, fresh: bool
    ) -> bool:
        token_id, client_id = claims.token_id, claims.client_id
        if not fresh and self._usable.is_usable(token_id, client_id, now):
            return True
        generation = self._usable.generation
        with reading(self._db, conn) as reader:
            usable = store.is_token_usable(reader, jti=token_id, client_id=client_id)
        if usable:
            self._usable.remember(token_id, client_id, read_at=now, generation=generation)
        return usable

    # --- signing keys ---

    def rotate_keys(
        self, conn: Connection, *, publish_ahead: timedelta = timedelta(0), actor: str
    ) -> SigningKey:
        """Make a new signing key, published now, signing from now + `publish_ahead`."""
        return self.keys.rotate(conn, publish_ahead=publish_ahead, actor=actor)

    def list_keys(self, conn: Connection) -> list[SigningKey]:
        """Every signing key, retired ones included, oldest first."""
        return self.keys.list_keys(conn)

    def jwks(self, conn: Connection) -> dict[str, list[dict[str, str]]]:
        """The JWK Set of every published key (RFC 7517), possibly empty before first use."""
        return self.keys.jwks(conn)

    def _record(
        self,
        conn: Connection,
        action: str,
        actor: str,
        *,
        target: str | None,
        workspace: str | None,
        outcome: str = "ok",
    ) -> None:
        self._audit(
            conn=conn,
            action=action,
            actor=actor,
            outcome=outcome,
            target=target,
            workspace=workspace,
        )


def _check_client_fields(*, name: str, scopes: frozenset[str], workspace: str) -> None:
    problems = []
    if not name.strip() or len(name.strip()) > _MAX_NAME:
        problems.append(FieldProblem("/name", f"give a name of 1 to {_MAX_NAME} characters"))
    unknown = unknown_scopes(scopes)
    if unknown:
        problems.append(FieldProblem("/scopes", f"unknown scopes: {' '.join(unknown)}"))
    elif not scopes:
        problems.append(FieldProblem("/scopes", "give at least one scope"))
    if not is_valid_workspace_id(workspace):
        problems.append(FieldProblem("/workspace", "use 1-40 of a-z, 0-9, '_' and '-'"))
    if problems:
        raise ValidationError("the client is invalid", problems)
