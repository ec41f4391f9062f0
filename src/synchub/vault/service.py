"""The OAuth connections of a workspace (ADR 0023): authorization code + PKCE with the state
and verifier kept server-side, tokens sealed in the vault, one refresh across processes, and
`invalid_grant` holding the connection's deliveries.

- `begin_authorization` keeps the state (hashed) and the code verifier (sealed) for a few
  minutes, single use; `complete_authorization` (the callback) checks them, exchanges the code
  and stores the token set sealed.
- Access tokens are cached in memory until `margin` before expiry; then one refresh per
  connection across every process: the credential row is locked (PostgreSQL SELECT … FOR
  UPDATE; on SQLite the transaction holds the one writer), re-read (another process may have
  refreshed while this one waited: then its token is used), refreshed at the vendor, and the
  new pair committed before the access token is handed out. A rotating refresh token (Xero)
  is therefore never sent twice.
- `invalid_grant` marks the connection `needs_reauthorization`, logs an alert, counts a
  metric and holds its deliveries (its breaker rows are paused until a re-authorisation
  releases them) instead of retrying them to the dead-letter queue.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from prometheus_client import Counter
from sqlalchemy.engine import Connection

from synchub.connectors.oauth import (
    InvalidGrantError,
    OAuthClient,
    ReauthorizationRequiredError,
    TokenSet,
    authorization_url,
    pkce_pair,
)
from synchub.core.clock import Clock
from synchub.core.errors import (
    ConfigError,
    FieldProblem,
    NotFoundError,
    RejectedError,
    TransientError,
    ValidationError,
)
from synchub.db import Database, UtcDateTime
from synchub.events import breaker_store
from synchub.events.breaker import Health
from synchub.observability.metrics import process_metrics
from synchub.register.model import BreakerPolicy
from synchub.vault import credentials
from synchub.vault.credentials import NEEDS_REAUTHORIZATION, OAUTH, Credential
from synchub.vault.store import Vault, state_label, vendor_oauth_states

log = structlog.get_logger(__name__)

HOLD = timedelta(days=365)  # how long a needs_reauthorization connection's deliveries wait
_RELEASE_BEYOND = timedelta(days=30)  # a pause this long is a hold, not a vendor's Retry-After
_FINISHED = ("succeeded", "dead")
# The columns of the delivery queue (events/store.py) that tell who has deliveries waiting.
_deliveries = sa.table(
    "deliveries",
    sa.column("workspace"),
    sa.column("destination"),
    sa.column("status"),
    sa.column("next_attempt_at", UtcDateTime),
)


def _state_hash(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


# -- metrics ---------------------------------------------------------------------------------

_counter: Counter | None = None
_counter_lock = threading.Lock()


def record_token_event(connection: str, outcome: str) -> None:
    """Count `synchub_vendor_token_refreshes_total{connection, outcome}`: refreshed, reused
    (another process had just refreshed), invalid_grant, failed, authorized."""
    global _counter  # registered once on this process's registry (observability/metrics.py)
    with _counter_lock:
        if _counter is None:
            _counter = Counter(
                "synchub_vendor_token_refreshes_total",
                "Vendor OAuth token events by connection and outcome (refreshed, reused, "
                "invalid_grant, failed, authorized).",
                ["connection", "outcome"],
                registry=process_metrics().registry,
            )
    _counter.labels(connection, outcome).inc()


# -- holding deliveries ----------------------------------------------------------------------


def hold_deliveries(
    conn: Connection,
    *,
    destination: str,
    workspaces: set[str],
    policy: BreakerPolicy,
    now: datetime,
) -> None:
    """Pause `destination` for every workspace with unfinished deliveries to it (and those
    given): its breaker row's paused_until moves a year out, so nothing is claimed, attempted
    or dead-lettered until a re-authorisation releases it."""
    d = _deliveries
    pending = conn.execute(
        sa.select(d.c.workspace)
        .distinct()
        .where(d.c.destination == destination, d.c.status.not_in(_FINISHED))
    ).scalars()
    until = now + HOLD
    for workspace in sorted(workspaces | set(pending)):
        key = (workspace, destination)
        breaker_store.insert_missing(conn, key, Health.fresh(policy), now)
        health = breaker_store.health_row(conn, key, lock=True) or Health.fresh(policy)
        if health.paused_until is None or health.paused_until < until - timedelta(hours=1):
            breaker_store.save_health(conn, key, replace(health, paused_until=until), now=now)


def release_deliveries(conn: Connection, *, destination: str, now: datetime) -> int:
    """Lift the holds `hold_deliveries` set on a destination; how many it lifted."""
    released = 0
    for key, health in breaker_store.health_rows(conn).items():
        paused = health.paused_until
        if key[1] == destination and paused is not None and paused - now > _RELEASE_BEYOND:
            breaker_store.save_health(conn, key, replace(health, paused_until=None), now=now)
            released += 1
    return released


# -- the service -----------------------------------------------------------------------------


@dataclass
class _Cached:
    access_token: str = field(repr=False)
    expires_at: datetime
    tenant_id: str | None


class VendorCredentials:
    """The OAuth connections of one register workspace: authorization, tokens, holds."""

    def __init__(
        self,
        db: Database,
        vault: Vault,
        *,
        clock: Clock,
        workspace: str,
        clients: Mapping[str, OAuthClient],
        policies: Mapping[str, BreakerPolicy],
        margin: timedelta = timedelta(minutes=5),
        state_ttl: timedelta = timedelta(minutes=10),
        audit: Callable[..., None] | None = None,
    ) -> None:
        self.db = db
        self.vault = vault
        self.clock = clock
        self.workspace = workspace
        self.clients = dict(clients)
        self.policies = dict(policies)
        self.margin = margin
        self.state_ttl = state_ttl
        self._audit = audit
        self._sources: dict[str, TokenSource] = {}
        self._lock = threading.Lock()

    def client(self, connection: str) -> OAuthClient:
        """The OAuth client of an OAuth connection."""
        client = self.clients.get(connection)
        if client is None:
            raise NotFoundError(f"no OAuth connection named {connection!r}")
        return client

    def source(self, connection: str) -> TokenSource:
        """The access-token source of a connection (one per process and connection)."""
        self.client(connection)
        with self._lock:
            if connection not in self._sources:
                self._sources[connection] = TokenSource(self, connection)
            return self._sources[connection]

    # -- authorization -------------------------------------------------------------------------

    def begin_authorization(self, connection: str) -> str:
        """Keep a fresh state and PKCE verifier server-side; the URL to open."""
        client = self.client(connection)
        now = self.clock.now()
        state = secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        digest = _state_hash(state)
        t = vendor_oauth_states
        with self.db.write() as conn:
            conn.execute(sa.delete(t).where(t.c.expires_at <= now))
            version, sealed = self.vault.seal(
                conn, verifier.encode("ascii"), label=state_label(digest), now=now
            )
            conn.execute(
                sa.insert(t).values(
                    state_hash=digest,
                    workspace=self.workspace,
                    connection=connection,
                    key_version=version,
                    verifier=sealed,
                    redirect_uri=client.app.redirect_uri,
                    created_at=now,
                    expires_at=now + self.state_ttl,
                )
            )
        return authorization_url(client.app, state=state, challenge=challenge)

    def complete_authorization(
        self,
        connection: str,
        *,
        state: str | None,
        code: str | None,
        error: str | None = None,
        iss: str | None = None,
    ) -> Credential:
        """The callback: spend the state, exchange the code, store the tokens sealed, release
        any held deliveries. ValidationError names the query parameter at fault."""
        client = self.client(connection)
        verifier = self._spend_state(connection, state)
        if error:
            raise ValidationError(
                f"{connection}: the vendor answered {error!r}",
                [FieldProblem("/error", f"authorization refused: {error}")],
            )
        expected = client.app.provider.issuer
        if iss is not None and expected is not None and iss.rstrip("/") != expected:
            raise ValidationError(
                f"{connection}: unexpected issuer", [FieldProblem("/iss", f"must be {expected}")]
            )
        if not code:
            raise ValidationError(f"{connection}: no code", [FieldProblem("/code", "required")])
        try:
            tokens = client.exchange_code(code, verifier)
        except InvalidGrantError as exc:
            raise ValidationError(
                f"{connection}: the code was refused",
                [FieldProblem("/code", "refused by the vendor")],
            ) from exc
        if not tokens.refresh_token:
            raise RejectedError(
                f"{connection}: the vendor issued no refresh token (was offline_access granted?)"
            )
        tenant = client.tenant_id(tokens.access_token)
        now = self.clock.now()
        with self.db.write() as conn:
            self._store(conn, connection, tokens, now=now, tenant_id=tenant, authorized=True)
            released = release_deliveries(conn, destination=connection, now=now)
            if self._audit is not None:
                self._audit(
                    conn,
                    actor="oauth_callback",
                    action="vendor_credentials.authorized",
                    workspace=self.workspace,
                    target=connection,
                )
            stored = credentials.read(conn, self.workspace, connection)
        assert stored is not None  # written just above
        self.source(connection).forget()
        record_token_event(connection, "authorized")
        log.info(
            "vendor_credentials.authorized",
            connection=connection,
            released_holds=released,
            tenant_id=tenant,
        )
        return stored

    def _spend_state(self, connection: str, state: str | None) -> str:
        if not state:
            raise ValidationError("state is missing", [FieldProblem("/state", "required")])
        digest = _state_hash(state)
        t = vendor_oauth_states
        now = self.clock.now()
        with self.db.write() as conn:
            row = conn.execute(sa.select(t).where(t.c.state_hash == digest)).mappings().first()
            if row is not None:  # single use: spent whatever happens next
                conn.execute(sa.delete(t).where(t.c.state_hash == digest))
            usable = (
                row is not None
                and row["connection"] == connection
                and row["workspace"] == self.workspace
                and row["expires_at"] > now
            )
            verifier = None
            if usable:
                assert row is not None
                verifier = self.vault.open(conn, bytes(row["verifier"]), label=state_label(digest))
        if verifier is None:
            raise ValidationError(
                "state is unknown, used or expired: start again with "
                f"`synchub connections authorize {connection}`",
                [FieldProblem("/state", "unknown, used or expired")],
            )
        return verifier.decode("ascii")

    def _store(
        self,
        conn: Connection,
        connection: str,
        tokens: TokenSet,
        *,
        now: datetime,
        tenant_id: str | None = None,
        authorized: bool = False,
        previous_refresh: str | None = None,
    ) -> None:
        refresh = tokens.refresh_token or previous_refresh  # HubSpot's does not rotate
        credentials.save(
            conn,
            self.vault,
            workspace=self.workspace,
            connection=connection,
            system=self.client(connection).app.provider.system,
            kind=OAUTH,
            secret={"access_token": tokens.access_token, "refresh_token": refresh},
            now=now,
            access_expires_at=tokens.expires_at,
            scope=tokens.scope,
            tenant_id=tenant_id,
            authorized=authorized,
        )

    # -- tokens --------------------------------------------------------------------------------

    def _fresh(self, credential: Credential, now: datetime) -> bool:
        expires = credential.access_expires_at
        return expires is not None and expires - self.margin > now

    def current(self, connection: str) -> _Cached:
        """A usable access token: the stored one while fresh, else one refresh for all."""
        with self.db.read() as conn:
            credential = credentials.read(conn, self.workspace, connection)
            usable = self._usable(conn, credential)
        if usable is not None:
            return usable
        return self._refresh(connection)

    def _usable(self, conn: Connection, credential: Credential | None) -> _Cached | None:
        """The stored access token while it is fresh; None when it must be refreshed or the
        connection has no usable grant (never authorised, or refused: `_refresh` holds)."""
        if credential is None or credential.status == NEEDS_REAUTHORIZATION:
            return None
        if not self._fresh(credential, self.clock.now()):
            return None
        secret = credentials.open_secret(conn, self.vault, credential)
        assert credential.access_expires_at is not None  # _fresh checked it
        return _Cached(
            str(secret["access_token"]), credential.access_expires_at, credential.tenant_id
        )

    def _refresh(self, connection: str) -> _Cached:
        client = self.client(connection)
        outcome, failure, result = "refreshed", None, None
        with self.db.write() as conn:
            now = self.clock.now()
            credential = credentials.read(conn, self.workspace, connection, lock=True)
            if credential is None:
                outcome = "unauthorized"
            elif credential.status == NEEDS_REAUTHORIZATION:
                outcome = "held"
            elif (result := self._usable(conn, credential)) is not None:
                outcome = "reused"  # another process refreshed while this one waited
            else:
                secret = credentials.open_secret(conn, self.vault, credential)
                try:
                    tokens = client.refresh(str(secret["refresh_token"]))
                except InvalidGrantError as exc:
                    outcome, failure = "invalid_grant", exc
                    credentials.mark_needs_reauthorization(
                        conn,
                        workspace=self.workspace,
                        connection=connection,
                        error="invalid_grant: the vendor refused the refresh token",
                        now=now,
                    )
                else:
                    # Committed (below, when this block ends) before anyone uses it.
                    self._store(
                        conn,
                        connection,
                        tokens,
                        now=now,
                        tenant_id=None,
                        previous_refresh=str(secret["refresh_token"]),
                    )
                    result = _Cached(tokens.access_token, tokens.expires_at, credential.tenant_id)
            if outcome in ("unauthorized", "held", "invalid_grant"):
                hold_deliveries(
                    conn,
                    destination=connection,
                    workspaces={self.workspace},
                    policy=self.policies.get(connection, BreakerPolicy()),
                    now=now,
                )
        # The transaction has committed: the new token set is stored before it is used.
        if outcome == "invalid_grant":
            record_token_event(connection, outcome)
            log.error(
                "vendor_credentials.reauthorization_required",
                alert=True,
                connection=connection,
                reason="invalid_grant",
                action=f"synchub connections authorize {connection}",
            )
            raise ReauthorizationRequiredError(
                f"{connection} needs re-authorisation: the vendor refused its refresh token"
            ) from failure
        if (outcome != "refreshed" and outcome != "reused") or result is None:
            verb = (
                "is not authorised yet" if outcome == "unauthorized" else "needs re-authorisation"
            )
            raise ReauthorizationRequiredError(
                f"{connection} {verb}: run `synchub connections authorize {connection}`"
            )
        record_token_event(connection, outcome)
        return result

    def statuses(self) -> dict[str, dict[str, Any]]:
        """Each connection's credential state (no secrets), by connection name."""
        with self.db.read() as conn:
            stored = credentials.read_all(conn, self.workspace)
        return {name: c.public() for name, c in stored.items()}


class TokenSource:
    """One connection's access token for its API client: cached until `margin` before expiry,
    then fetched through `VendorCredentials.current` (one refresh across processes)."""

    def __init__(self, service: VendorCredentials, connection: str) -> None:
        self._service = service
        self.connection = connection
        self._cached: _Cached | None = None
        self._lock = threading.Lock()  # one refresh per process; the row lock does the rest

    def _get(self) -> _Cached:
        now = self._service.clock.now()
        cached = self._cached
        if cached is not None and cached.expires_at - self._service.margin > now:
            return cached
        with self._lock:
            cached = self._cached
            if cached is not None and cached.expires_at - self._service.margin > now:
                return cached
            try:
                cached = self._service.current(self.connection)
            except ReauthorizationRequiredError:
                raise
            except TransientError:  # the token endpoint is down: the delivery retries
                record_token_event(self.connection, "failed")
                raise
            self._cached = cached
            return cached

    def access_token(self) -> str:
        """A bearer token to send now."""
        return self._get().access_token

    def tenant_id(self) -> str:
        """Xero: the organisation the grant reaches."""
        tenant = self._get().tenant_id
        if not tenant:
            raise ConfigError(f"{self.connection}: the grant names no Xero organisation")
        return tenant

    def forget(self) -> None:
        """Drop the cached token (after a new authorization)."""
        with self._lock:
            self._cached = None
