"""The vault's tables and its keys: data keys by version, sealed secrets, rotation (ADR 0023).

Every sealed column sits next to a `key_version` column naming the data key that sealed it (the
ciphertext names it too). New secrets are sealed under the newest data key, read in the same
transaction as the write. Data keys are never deleted, so every ciphertext ever written stays
readable: `rotate` makes a new key and re-seals row by row, one short transaction per batch,
and a crash half-way leaves each row under either its old or its new key, both readable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from synchub.db import Database, UtcDateTime, metadata
from synchub.vault import crypto

vault_keys = sa.Table(
    "vault_keys",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
    sa.Column("kek_id", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # Set once a rotation has re-sealed every secret under a newer key (kept for old backups).
    sa.Column("retired_at", UtcDateTime),
)

# One row per vendor connection: its OAuth tokens or API key, sealed, and their state.
vendor_credentials = sa.Table(
    "vendor_credentials",
    metadata,
    sa.Column("workspace", sa.String(40), primary_key=True),
    sa.Column("connection", sa.String(80), primary_key=True),
    sa.Column("system", sa.String(20), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # oauth | api_key
    sa.Column("status", sa.String(30), nullable=False),  # active | needs_reauthorization
    sa.Column("key_version", sa.Integer, nullable=False),
    sa.Column("secret", sa.LargeBinary, nullable=False),  # sealed JSON
    sa.Column("access_expires_at", UtcDateTime),
    sa.Column("scope", sa.Text),
    sa.Column("tenant_id", sa.String(64)),
    sa.Column("generation", sa.Integer, nullable=False),  # +1 at every new token set
    sa.Column("authorized_at", UtcDateTime),
    sa.Column("refreshed_at", UtcDateTime),
    sa.Column("needs_reauthorization_since", UtcDateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# Authorizations started and not yet completed: the state (hashed) and the PKCE verifier
# (sealed), single use, expiring.
vendor_oauth_states = sa.Table(
    "vendor_oauth_states",
    metadata,
    sa.Column("state_hash", sa.String(64), primary_key=True),
    sa.Column("workspace", sa.String(40), nullable=False),
    sa.Column("connection", sa.String(80), nullable=False),
    sa.Column("key_version", sa.Integer, nullable=False),
    sa.Column("verifier", sa.LargeBinary, nullable=False),
    sa.Column("redirect_uri", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False, index=True),
)


def credential_label(workspace: str, connection: str, kind: str) -> str:
    """What a credential's ciphertext is bound to."""
    return f"vendor_credentials/{workspace}/{connection}/{kind}"


def state_label(state_hash: str) -> str:
    """What a pending authorization's sealed verifier is bound to."""
    return f"vendor_oauth_states/{state_hash}"


@dataclass(frozen=True)
class Sealed:
    """One table's sealed column, for rotation: how to find, label and rewrite its rows."""

    table: sa.Table
    column: str
    keys: tuple[str, ...]
    label: Callable[[dict[str, Any]], str]


SEALED = (
    Sealed(
        vendor_credentials,
        "secret",
        ("workspace", "connection"),
        lambda r: credential_label(r["workspace"], r["connection"], r["kind"]),
    ),
    Sealed(
        vendor_oauth_states, "verifier", ("state_hash",), lambda r: state_label(r["state_hash"])
    ),
)


class Vault:
    """Seals and opens secrets under the newest data key; data keys unwrapped once, cached."""

    def __init__(self, kek: bytes) -> None:
        self._kek = kek
        self._kek_id = crypto.kek_fingerprint(kek)
        self._keys: dict[int, bytes] = {}
        self._lock = threading.Lock()

    def newest_version(self, conn: Connection) -> int | None:
        """The newest data key's version (None before the first secret)."""
        newest = conn.execute(sa.select(sa.func.max(vault_keys.c.version))).scalar()
        return None if newest is None else int(newest)

    def add_key(self, conn: Connection, version: int, *, now: datetime) -> bool:
        """Insert data key `version` unless it exists; whether this call made it."""
        key = crypto.new_data_key()
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        values = {
            "version": version,
            "kek_id": self._kek_id,
            "created_at": now,
            "wrapped_key": crypto.wrap_data_key(self._kek, version, key),
        }
        result = conn.execute(dialect.insert(vault_keys).values(**values).on_conflict_do_nothing())
        return bool(result.rowcount)

    def _data_key(self, conn: Connection, version: int) -> bytes:
        with self._lock:
            key = self._keys.get(version)
        if key is not None:
            return key
        row = conn.execute(
            sa.select(vault_keys.c.wrapped_key, vault_keys.c.kek_id).where(
                vault_keys.c.version == version
            )
        ).first()
        if row is None:
            raise crypto.VaultError(f"vault data key v{version} is missing")
        key = crypto.unwrap_data_key(self._kek, version, bytes(row.wrapped_key))
        with self._lock:
            self._keys[version] = key
        return key

    def seal(
        self, conn: Connection, plaintext: bytes, *, label: str, now: datetime
    ) -> tuple[int, bytes]:
        """(version, ciphertext) of `plaintext` under the newest data key (call in the write's
        own transaction, so a rotation that started earlier is seen); the first seal makes
        data key 1."""
        version = self.newest_version(conn)
        if version is None:
            self.add_key(conn, 1, now=now)
            version = self.newest_version(conn) or 1
        return version, crypto.seal(self._data_key(conn, version), version, plaintext, label=label)

    def open(self, conn: Connection, sealed: bytes, *, label: str) -> bytes:
        """The plaintext of a sealed secret, whichever data key sealed it."""
        version = crypto.version_of(sealed)
        return crypto.open_sealed(self._data_key(conn, version), sealed, label=label)


@dataclass(frozen=True)
class RotationReport:
    """What `rotate` did."""

    version: int  # the data key every secret is now under
    new_key: bool  # False: an unfinished rotation was resumed
    resealed: int
    remaining: int  # rows still under older keys (written while it ran; the next run takes them)


def behind(conn: Connection, version: int) -> int:
    """How many sealed rows are under a data key older than `version`."""
    return sum(
        int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(s.table)
                .where(s.table.c.key_version < version)
            ).scalar()
            or 0
        )
        for s in SEALED
    )


def key_status(conn: Connection) -> list[dict[str, Any]]:
    """Every data key with how many sealed rows use it (no key material)."""
    counts: dict[int, int] = {}
    for s in SEALED:
        query = sa.select(s.table.c.key_version, sa.func.count()).group_by(s.table.c.key_version)
        for version, n in conn.execute(query):
            counts[int(version)] = counts.get(int(version), 0) + int(n)
    rows = conn.execute(sa.select(vault_keys).order_by(vault_keys.c.version)).mappings()
    return [
        {
            "version": r["version"],
            "kek_id": r["kek_id"],
            "created_at": r["created_at"],
            "retired_at": r["retired_at"],
            "secrets": counts.get(r["version"], 0),
        }
        for r in rows
    ]


def rotate(
    db: Database,
    vault: Vault,
    *,
    now: datetime,
    batch: int = 50,
    after_batch: Callable[[int], None] | None = None,
) -> RotationReport:
    """Re-seal every secret under a new data key; idempotent and crash-safe.

    When secrets remain under older keys (a rotation that stopped half-way), it resumes that
    rotation instead of making another key. Each batch is one transaction: its rows are locked
    (PostgreSQL) or the writer is held (SQLite), re-read, opened with their own key and sealed
    under the newest. Old keys are kept, so no crash can leave a secret unreadable.
    `after_batch` (tests) runs after each committed batch with the count so far.
    """
    with db.write() as conn:
        newest = vault.newest_version(conn)
        if newest is not None and behind(conn, newest) > 0:
            target, made = newest, False
        else:
            target = (newest or 0) + 1
            made = vault.add_key(conn, target, now=now)
    resealed = 0
    while True:
        with db.write() as conn:
            done = _reseal_batch(conn, vault, target, batch, now)
        resealed += done
        if after_batch is not None and done:
            after_batch(resealed)
        if done == 0:
            break
    with db.write() as conn:
        remaining = behind(conn, target)
        if remaining == 0:
            conn.execute(
                sa.update(vault_keys)
                .where(vault_keys.c.version < target, vault_keys.c.retired_at.is_(None))
                .values(retired_at=now)
            )
    return RotationReport(version=target, new_key=made, resealed=resealed, remaining=remaining)


def _reseal_batch(conn: Connection, vault: Vault, target: int, batch: int, now: datetime) -> int:
    done = 0
    for sealed in SEALED:
        t = sealed.table
        query = sa.select(t).where(t.c.key_version < target).limit(batch - done)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        for row in conn.execute(query).mappings().all():
            label = sealed.label(dict(row))
            plaintext = vault.open(conn, bytes(row[sealed.column]), label=label)
            version, ciphertext = vault.seal(conn, plaintext, label=label, now=now)
            where = [t.c[k] == row[k] for k in sealed.keys]
            conn.execute(
                sa.update(t)
                .where(*where)
                .values({sealed.column: ciphertext, "key_version": version})
            )
            done += 1
        if done >= batch:
            break
    return done
