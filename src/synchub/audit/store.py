"""The audit_log table. Rows are only ever inserted; each carries the hash of the one before."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from synchub.db import Prepared, UtcDateTime, keyset_page, metadata

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


# Every write request appends an entry: its statements are built once and executed with
# parameters, on SQLite straight on the transaction's connection (db.Prepared).
_HEAD = sa.select(audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
_READ_HEAD = Prepared(_HEAD)
_APPEND = Prepared(
    sa.insert(audit_log), column_keys=[c.name for c in audit_log.c if c.name != "seq"]
)
_LOCK = sa.select(sa.func.pg_advisory_xact_lock(0x5A5D17))


def last_hash(conn: Connection) -> str:
    """The hash of the newest entry ("" for an empty log): one probe of the primary key."""
    row = _READ_HEAD.first(conn, {})
    return str(row["hash"] if row else "")


def append(conn: Connection, row: dict[str, Any]) -> None:
    """Insert one entry."""
    _APPEND.rowcount(conn, row)


# The same append, made only if `prev_hash` is still the newest entry's hash, which the insert
# reads itself: a writer that remembers the head it wrote last needs no separate read.
_FIELDS = [c for c in audit_log.c if c.name != "seq"]
_APPEND_AFTER_HEAD = Prepared(
    sa.insert(audit_log)
    .from_select(
        [c.name for c in _FIELDS],
        sa.select(*[sa.bindparam(f"p_{c.name}", type_=c.type) for c in _FIELDS]).where(
            sa.func.coalesce(_HEAD.scalar_subquery(), "")
            == sa.bindparam("p_head", type_=audit_log.c.prev_hash.type)
        ),
    )
    .execution_options(preserve_rowcount=True)
)  # psycopg reports no rowcount for it otherwise


def append_after_head(conn: Connection, row: dict[str, Any]) -> bool:
    """Insert one entry if its prev_hash is the newest entry's hash; False (nothing written)
    if another entry came first. Call with the chain locked, like `append`."""
    params = {f"p_{c.name}": row[c.name] for c in _FIELDS}
    return _APPEND_AFTER_HEAD.rowcount(conn, {**params, "p_head": row["prev_hash"]}) == 1


def lock_chain(conn: Connection) -> None:
    """PostgreSQL: serialise appends so the hash chain has no forks (SQLite has one writer).

    The head must be read by a later statement than the one that takes the lock: under READ
    COMMITTED a statement sees the snapshot taken when it started, which is before it waited
    for the lock, so a head read in the same statement could miss the previous holder's entry.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK)


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
