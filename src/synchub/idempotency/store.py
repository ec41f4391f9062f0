"""The idempotency_keys table: one row per (client, method, route, key), written in the same
transaction as the request's effects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from synchub.db import Prepared, UtcDateTime, metadata
from synchub.idempotency.model import Scope

idempotency_keys = sa.Table(
    "idempotency_keys", metadata,
    sa.Column("client_id", sa.String(80), nullable=False),
    sa.Column("method", sa.String(10), nullable=False),
    sa.Column("route", sa.String(200), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("response_body", sa.JSON, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False, index=True),
    sa.PrimaryKeyConstraint("client_id", "method", "route", "key"),
)  # fmt: skip


# Built once and executed with parameters (every write request runs them), on SQLite straight
# on the transaction's connection (db.Prepared): no per-request compiling or bookkeeping.
_t = idempotency_keys.c
_FIND = Prepared(sa.select(idempotency_keys).where(
    _t.client_id == sa.bindparam("client_id"), _t.method == sa.bindparam("method"),
    _t.route == sa.bindparam("route"), _t.key == sa.bindparam("key"),
))  # fmt: skip
_SAVE = Prepared(sa.insert(idempotency_keys), column_keys=[c.name for c in idempotency_keys.c])
_TRY_LOCK = sa.select(
    sa.func.pg_try_advisory_xact_lock(sa.bindparam("lock_id", type_=sa.BigInteger))
)


def _key_of(scope: Scope) -> dict[str, str]:
    return {"client_id": scope.client_id, "method": scope.method, "route": scope.route,
            "key": scope.key}  # fmt: skip


def find(conn: Connection, scope: Scope) -> dict[str, Any] | None:
    """The stored outcome for a key, if any (one primary-key probe)."""
    return _FIND.first(conn, _key_of(scope))


def save(
    conn: Connection,
    scope: Scope,
    *,
    fingerprint: str,
    status_code: int,
    body: Any,
    now: datetime,
    expires_at: datetime,
) -> None:
    """Store a finished request's outcome."""
    _SAVE.rowcount(conn, {**_key_of(scope), "fingerprint": fingerprint,
                          "status_code": status_code, "response_body": body,
                          "created_at": now, "expires_at": expires_at})  # fmt: skip


def delete_expired(conn: Connection, *, now: datetime) -> int:
    """Forget keys past their retention; returns how many."""
    result = conn.execute(sa.delete(idempotency_keys).where(idempotency_keys.c.expires_at < now))
    return int(result.rowcount or 0)


def try_lock(conn: Connection, scope: Scope) -> bool:
    """PostgreSQL: take a transaction-scoped advisory lock on the key, without waiting."""
    if conn.dialect.name != "postgresql":
        return True  # SQLite serialises writers; the in-process registry covers threads
    return bool(conn.execute(_TRY_LOCK, {"lock_id": scope.lock_id()}).scalar_one())
