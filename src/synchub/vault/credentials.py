"""Vendor credentials in the vault: one row per connection with its sealed OAuth token set
or API key, and the state the hub shows (active, needs_reauthorization). No function here
returns or logs a secret except `open_secret`, and nothing stores one in the clear."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from synchub.db import UtcDateTime
from synchub.vault.store import Vault, credential_label, vendor_credentials

ACTIVE = "active"
NEEDS_REAUTHORIZATION = "needs_reauthorization"
OAUTH = "oauth"
API_KEY = "api_key"


@dataclass(frozen=True)
class Credential:
    """A stored credential's row: everything but the secret in the clear."""

    workspace: str
    connection: str
    system: str
    kind: str
    status: str
    sealed: bytes
    key_version: int
    access_expires_at: datetime | None
    scope: str | None
    tenant_id: str | None
    generation: int
    authorized_at: datetime | None
    refreshed_at: datetime | None
    needs_reauthorization_since: datetime | None
    last_error: str | None

    @property
    def label(self) -> str:
        """What its ciphertext is bound to."""
        return credential_label(self.workspace, self.connection, self.kind)

    def public(self) -> dict[str, Any]:
        """What the API and CLI show: state and times, never a token."""
        return {
            "kind": self.kind,
            "status": self.status,
            "tenant_id": self.tenant_id,
            "scope": self.scope,
            "access_expires_at": self.access_expires_at,
            "authorized_at": self.authorized_at,
            "refreshed_at": self.refreshed_at,
            "needs_reauthorization_since": self.needs_reauthorization_since,
            "last_error": self.last_error,
            "key_version": self.key_version,
        }


def _credential(row: Any) -> Credential:
    return Credential(
        workspace=row["workspace"],
        connection=row["connection"],
        system=row["system"],
        kind=row["kind"],
        status=row["status"],
        sealed=bytes(row["secret"]),
        key_version=row["key_version"],
        access_expires_at=row["access_expires_at"],
        scope=row["scope"],
        tenant_id=row["tenant_id"],
        generation=row["generation"],
        authorized_at=row["authorized_at"],
        refreshed_at=row["refreshed_at"],
        needs_reauthorization_since=row["needs_reauthorization_since"],
        last_error=row["last_error"],
    )


def read(
    conn: Connection, workspace: str, connection: str, *, lock: bool = False
) -> Credential | None:
    """A connection's credential; `lock` holds its row until the transaction ends (PostgreSQL:
    SELECT … FOR UPDATE; on SQLite the writer the transaction holds already excludes others)."""
    t = vendor_credentials
    query = sa.select(t).where(t.c.workspace == workspace, t.c.connection == connection)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return _credential(row) if row is not None else None


def read_all(conn: Connection, workspace: str) -> dict[str, Credential]:
    """Every credential of a workspace by connection name."""
    t = vendor_credentials
    rows = conn.execute(sa.select(t).where(t.c.workspace == workspace)).mappings()
    return {r["connection"]: _credential(r) for r in rows}


def open_secret(conn: Connection, vault: Vault, credential: Credential) -> dict[str, Any]:
    """The decrypted secret: {"access_token", "refresh_token"} or {"api_key"}."""
    return dict(json.loads(vault.open(conn, credential.sealed, label=credential.label)))


def save(
    conn: Connection,
    vault: Vault,
    *,
    workspace: str,
    connection: str,
    system: str,
    kind: str,
    secret: dict[str, Any],
    now: datetime,
    access_expires_at: datetime | None = None,
    scope: str | None = None,
    tenant_id: str | None = None,
    authorized: bool = False,
) -> None:
    """Insert or replace a connection's credential, sealed under the newest data key, and mark
    it active. `authorized`: a new grant (else a refresh of the same one)."""
    label = credential_label(workspace, connection, kind)
    plaintext = json.dumps(secret, sort_keys=True).encode("utf-8")
    version, sealed = vault.seal(conn, plaintext, label=label, now=now)
    values: dict[str, Any] = {
        "system": system,
        "kind": kind,
        "status": ACTIVE,
        "key_version": version,
        "secret": sealed,
        "access_expires_at": access_expires_at,
        "scope": scope,
        "needs_reauthorization_since": None,
        "last_error": None,
        "updated_at": now,
    }
    if tenant_id is not None:
        values["tenant_id"] = tenant_id
    if authorized:
        values["authorized_at"] = now
    else:
        values["refreshed_at"] = now
    t = vendor_credentials
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(t).values(
        workspace=workspace, connection=connection, generation=1, **values
    )
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=[t.c.workspace, t.c.connection],
            set_={**values, "generation": t.c.generation + 1},
        )
    )


def mark_needs_reauthorization(
    conn: Connection, *, workspace: str, connection: str, error: str, now: datetime
) -> None:
    """The grant is gone (invalid_grant): keep the row, say so, remember since when."""
    t = vendor_credentials
    conn.execute(
        sa.update(t)
        .where(t.c.workspace == workspace, t.c.connection == connection)
        .values(
            status=NEEDS_REAUTHORIZATION,
            last_error=error,
            updated_at=now,
            needs_reauthorization_since=sa.func.coalesce(
                t.c.needs_reauthorization_since, sa.bindparam("since", now, type_=UtcDateTime)
            ),
        )
    )
