"""Tables and queries of the authorization server: workspaces, clients, keys, revocations."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from synchub.auth.model import ApiClient, SigningKey, format_scope, parse_scope
from synchub.db import UtcDateTime, metadata

workspaces = sa.Table(
    "workspaces", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("kind", sa.String(10), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.CheckConstraint("kind IN ('live', 'sandbox')", name="kind"),
)  # fmt: skip

api_clients = sa.Table(
    "api_clients", metadata,
    sa.Column("client_id", sa.String(40), primary_key=True),
    sa.Column("workspace", sa.String(40), sa.ForeignKey("workspaces.id"), nullable=False,
              index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("secret_hash", sa.String(255), nullable=False),  # scrypt$n$r$p$salt$hash
    sa.Column("scopes", sa.Text, nullable=False),  # space-separated
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
)  # fmt: skip

signing_keys = sa.Table(
    "signing_keys", metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("alg", sa.String(10), nullable=False),
    # version byte, AES-GCM nonce, ciphertext of the PKCS#8 PEM (see auth/keys.py)
    sa.Column("private_key_sealed", sa.LargeBinary, nullable=False),
    sa.Column("public_jwk", sa.JSON, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("activates_at", UtcDateTime, nullable=False),
    sa.Column("retired_at", UtcDateTime, nullable=True),
)  # fmt: skip

revoked_tokens = sa.Table(
    "revoked_tokens", metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("expires_at", UtcDateTime, nullable=False, index=True),
)  # fmt: skip


def _insert_unless_present(conn: Connection, table: sa.Table, key: str) -> sa.Insert:
    # Concurrent writers of the same row must not fail (on PostgreSQL a unique violation
    # would abort the caller's whole transaction).
    if conn.dialect.name == "postgresql":
        return pg_insert(table).on_conflict_do_nothing(index_elements=[key])
    return sqlite_insert(table).on_conflict_do_nothing(index_elements=[key])


def ensure_workspace(conn: Connection, workspace: str, *, kind: str, now: datetime) -> None:
    """Create a workspace unless it exists (concurrent creators do not conflict)."""
    insert = _insert_unless_present(conn, workspaces, "id")
    conn.execute(insert.values(id=workspace, kind=kind, created_at=now))


def insert_client(conn: Connection, client: ApiClient, *, secret_hash: str) -> None:
    """Store a new client with its secret's hash."""
    conn.execute(
        sa.insert(api_clients).values(
            client_id=client.client_id, workspace=client.workspace, name=client.name,
            secret_hash=secret_hash, scopes=format_scope(client.scopes),
            created_at=client.created_at, revoked_at=client.revoked_at,
        )
    )  # fmt: skip


def _client(row: Any) -> ApiClient:
    return ApiClient(
        client_id=row.client_id, workspace=row.workspace, name=row.name,
        scopes=parse_scope(row.scopes), created_at=row.created_at, revoked_at=row.revoked_at,
    )  # fmt: skip


# Read paths run on every token request or check: built once, executed with parameters, so
# SQLAlchemy reuses the compiled statement instead of rebuilding and re-keying it each time.
_FIND_CLIENT = sa.select(api_clients).where(api_clients.c.client_id == sa.bindparam("client_id"))


def find_client_credential(conn: Connection, client_id: str) -> tuple[ApiClient, str] | None:
    """A client and its stored secret hash, or None if no such client."""
    row = conn.execute(_FIND_CLIENT, {"client_id": client_id}).first()
    return None if row is None else (_client(row), row.secret_hash)


def list_clients(conn: Connection, *, workspace: str | None = None) -> list[ApiClient]:
    """Clients in creation order, optionally of one workspace."""
    query = sa.select(api_clients).order_by(api_clients.c.created_at, api_clients.c.client_id)
    if workspace is not None:
        query = query.where(api_clients.c.workspace == workspace)
    return [_client(row) for row in conn.execute(query)]


def mark_client_revoked(conn: Connection, client_id: str, *, now: datetime) -> None:
    """Set a client's revoked_at unless it is already revoked."""
    conn.execute(
        sa.update(api_clients)
        .where(api_clients.c.client_id == client_id, api_clients.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def insert_signing_key(conn: Connection, key: SigningKey, *, sealed: bytes) -> None:
    """Store a signing key: its sealed private half and its public JWK."""
    conn.execute(
        sa.insert(signing_keys).values(
            kid=key.kid, alg=key.alg, private_key_sealed=sealed, public_jwk=key.public_jwk,
            created_at=key.created_at, activates_at=key.activates_at, retired_at=key.retired_at,
        )
    )  # fmt: skip


def _signing_key(row: Any) -> SigningKey:
    return SigningKey(
        kid=row.kid, alg=row.alg, public_jwk=dict(row.public_jwk), created_at=row.created_at,
        activates_at=row.activates_at, retired_at=row.retired_at,
    )  # fmt: skip


_KEY_COLUMNS = [c for c in signing_keys.c if c.name != "private_key_sealed"]


def list_signing_keys(conn: Connection) -> list[SigningKey]:
    """Every signing key, retired ones included, oldest first (no private halves)."""
    query = sa.select(*_KEY_COLUMNS).order_by(signing_keys.c.activates_at, signing_keys.c.kid)
    return [_signing_key(row) for row in conn.execute(query)]


_PUBLISHED_KEYS = sa.select(*_KEY_COLUMNS).where(
    sa.or_(
        signing_keys.c.retired_at.is_(None),
        signing_keys.c.retired_at > sa.bindparam("now", type_=UtcDateTime),
    )
)


def published_signing_keys(conn: Connection, *, now: datetime) -> list[SigningKey]:
    """The keys not retired at `now` (no private halves)."""
    return [_signing_key(row) for row in conn.execute(_PUBLISHED_KEYS, {"now": now})]


def find_sealed_private_key(conn: Connection, kid: str) -> bytes | None:
    """The sealed private half of a key."""
    query = sa.select(signing_keys.c.private_key_sealed).where(signing_keys.c.kid == kid)
    sealed = conn.execute(query).scalar_one_or_none()
    return None if sealed is None else bytes(sealed)


def schedule_retirement(conn: Connection, kids: Iterable[str], *, at: datetime) -> None:
    """Set retired_at on keys that have none yet."""
    conn.execute(
        sa.update(signing_keys)
        .where(signing_keys.c.kid.in_(list(kids)), signing_keys.c.retired_at.is_(None))
        .values(retired_at=at)
    )


def insert_revoked_token(conn: Connection, jti: str, *, expires_at: datetime) -> bool:
    """Remember a revoked token id until it expires; False if it was already there."""
    insert = _insert_unless_present(conn, revoked_tokens, "jti").returning(revoked_tokens.c.jti)
    return conn.execute(insert.values(jti=jti, expires_at=expires_at)).first() is not None


# Two primary-key probes in one statement: the token id is not revoked, the client is not.
_USABLE = sa.select(
    sa.and_(
        ~sa.select(revoked_tokens.c.jti)
        .where(revoked_tokens.c.jti == sa.bindparam("jti"))
        .exists(),
        sa.select(api_clients.c.client_id)
        .where(
            api_clients.c.client_id == sa.bindparam("client_id"),
            api_clients.c.revoked_at.is_(None),
        )
        .exists(),
    )
)


def is_token_usable(conn: Connection, *, jti: str, client_id: str) -> bool:
    """Whether a token id is not revoked and its client exists and is not revoked (one read)."""
    return bool(conn.execute(_USABLE, {"jti": jti, "client_id": client_id}).scalar())


def delete_expired_revocations(conn: Connection, *, before: datetime) -> None:
    """Forget revoked token ids whose tokens expired before `before`."""
    conn.execute(sa.delete(revoked_tokens).where(revoked_tokens.c.expires_at < before))
