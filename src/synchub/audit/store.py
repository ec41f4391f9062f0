"""The audit_log table. Rows are only ever inserted; each carries the hash of the one before."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from synchub.db import UtcDateTime, keyset_page, metadata

audit_log = sa.Table(
    "audit_log", metadata,
    # Appends are ordered by this sequence (under a lock), never by wall-clock ids.
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("id", sa.String(40), nullable=False, unique=True),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("workspace", sa.String(40), nullable=True, index=True),
    sa.Column("actor", sa.String(120), nullable=False),
    sa.Column("action", sa.String(80), nullable=False),
    sa.Column("target", sa.String(255)),
    sa.Column("outcome", sa.String(40), nullable=False),
    sa.Column("request_id", sa.String(60)),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False, unique=True),
)  # fmt: skip


def last_hash(conn: Connection) -> str:
    """The hash of the newest entry ("" for an empty log)."""
    query = sa.select(audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
    return str(conn.execute(query).scalar_one_or_none() or "")


def append(conn: Connection, row: dict[str, Any]) -> None:
    """Insert one entry."""
    conn.execute(sa.insert(audit_log).values(**row))


def lock_chain(conn: Connection) -> None:
    """PostgreSQL: serialise appends so the hash chain has no forks (SQLite has one writer)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(0x5A5D17)))


def page(
    conn: Connection,
    *,
    workspace: str | None,
    limit: int,
    starting_after: str | None,
    action: str | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Entries in order, optionally of one workspace and action."""
    query = sa.select(audit_log)
    if workspace is not None:
        query = query.where(audit_log.c.workspace == workspace)
    if action:
        query = query.where(audit_log.c.action == action)
    return keyset_page(conn, query, audit_log.c.id, limit=limit, starting_after=starting_after)
    # (ids are ULIDs: their order matches seq except across clock skew between hosts)


def all_in_order(conn: Connection) -> list[dict[str, Any]]:
    """The whole log, oldest first (for verification)."""
    rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq)).mappings()
    return [dict(r) for r in rows]
