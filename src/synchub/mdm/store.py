"""Tables and queries for golden records, the crosswalk, source snapshots and provenance."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from synchub.core.entities import ENTITIES, LINE_FIELDS, FieldSpec, Kind
from synchub.core.errors import LinkConflictError
from synchub.db import UtcDateTime, keyset_page, metadata

# The crosswalk rule of a vendor id its vendor merged into another record (mdm/merge.py).
MERGED_AWAY = "merged_away"

TABLE_NAMES = {
    "account": "accounts",
    "customer": "customers",
    "plan": "plans",
    "subscription": "subscriptions",
    "invoice": "invoices",
    "payment": "payments",
    "contact": "contacts",
    "refund": "refunds",
}


def _column(spec: FieldSpec) -> sa.Column[Any]:
    kinds: dict[Kind, Any] = {
        Kind.TEXT: sa.Text,
        Kind.EMAIL: sa.String(320),
        Kind.INT: sa.BigInteger,
        Kind.BOOL: sa.Boolean,
        Kind.CURRENCY: sa.String(3),
        Kind.DATETIME: UtcDateTime,
        Kind.DATE: sa.Date,
        Kind.REF: sa.String(40),
        Kind.DECIMAL: sa.String(40),  # exact decimal text, never a float column
    }
    return sa.Column(spec.name, kinds[spec.kind], index=spec.kind in (Kind.REF, Kind.EMAIL))


def _golden_table(entity: str) -> sa.Table:
    return sa.Table(
        TABLE_NAMES[entity],
        metadata,
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace", sa.String(40), nullable=False, index=True),
        *[_column(spec) for spec in ENTITIES[entity]],
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )


GOLDEN: dict[str, sa.Table] = {entity: _golden_table(entity) for entity in ENTITIES}

invoice_lines = sa.Table(
    "invoice_lines",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("workspace", sa.String(40), nullable=False),
    sa.Column(
        "invoice_id", sa.String(40), sa.ForeignKey("invoices.id"), nullable=False, index=True
    ),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("external_id", sa.String(255), nullable=False),
    *[_column(spec) for spec in LINE_FIELDS],
    sa.UniqueConstraint("invoice_id", "external_id"),
)

crosswalk = sa.Table(
    "crosswalk",
    metadata,
    sa.Column("workspace", sa.String(40), nullable=False),
    sa.Column("entity", sa.String(30), nullable=False),
    sa.Column("system", sa.String(40), nullable=False),
    sa.Column("external_id", sa.String(255), nullable=False),
    sa.Column("canonical_id", sa.String(40), nullable=False, index=True),
    sa.Column("reason", sa.String(80), nullable=False),  # the rule that made it (ADR 0016)
    sa.Column("linked_at", UtcDateTime, nullable=False),
    sa.Column("score", sa.Float),  # the match score, for a fuzzy or confirmed link
    sa.PrimaryKeyConstraint("workspace", "entity", "system", "external_id"),
)

source_records = sa.Table(
    "source_records",
    metadata,
    sa.Column("workspace", sa.String(40), nullable=False),
    sa.Column("system", sa.String(40), nullable=False),
    sa.Column("object_type", sa.String(60), nullable=False),
    sa.Column("external_id", sa.String(255), nullable=False),
    sa.Column("entity", sa.String(30), nullable=False),
    sa.Column("canonical_id", sa.String(40), nullable=False),
    sa.Column("source_version", sa.BigInteger, nullable=False),
    sa.Column("payload_hash", sa.String(64), nullable=False),
    sa.Column("mapping_version", sa.String(60), nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("workspace", "system", "object_type", "external_id"),
)

field_provenance = sa.Table(
    "field_provenance",
    metadata,
    sa.Column("workspace", sa.String(40), nullable=False),
    sa.Column("entity", sa.String(30), nullable=False),
    sa.Column("canonical_id", sa.String(40), nullable=False),
    sa.Column("field", sa.String(60), nullable=False),
    sa.Column("system", sa.String(40), nullable=False),
    sa.Column("external_id", sa.String(255), nullable=False),
    sa.Column("mapping_version", sa.String(60), nullable=False),
    sa.Column("source_version", sa.BigInteger, nullable=False),
    sa.Column("observed_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("workspace", "entity", "canonical_id", "field"),
)

conflicts = sa.Table(
    "conflicts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workspace", sa.String(40), nullable=False),
    sa.Column("entity", sa.String(30), nullable=False),
    sa.Column("canonical_id", sa.String(40), nullable=False, index=True),
    sa.Column("field", sa.String(60), nullable=False),
    sa.Column("owner", sa.String(40), nullable=False),
    sa.Column("owner_value", sa.JSON),
    sa.Column("other_system", sa.String(40), nullable=False),
    sa.Column("other_value", sa.JSON),
    sa.Column("observed_at", UtcDateTime, nullable=False),
    # Reconciliation (migration 0007): open until the system agrees again.
    sa.Column("status", sa.String(20), nullable=False, server_default="open"),
    sa.Column("found_by", sa.String(20), nullable=False, server_default="ingest"),
    sa.Column("resolved_at", UtcDateTime),
    sa.Column("resolved_by", sa.String(120)),
    sa.Index("ix_conflicts_status", "workspace", "status"),
)


# -- queries ---------------------------------------------------------------------------------


def find_canonical_id(
    conn: Connection, *, workspace: str, entity: str, system: str, external_id: str
) -> str | None:
    """The canonical id linked to a system's id, if any."""
    query = sa.select(crosswalk.c.canonical_id).where(
        crosswalk.c.workspace == workspace,
        crosswalk.c.entity == entity,
        crosswalk.c.system == system,
        crosswalk.c.external_id == external_id,
    )
    return conn.execute(query).scalar_one_or_none()


def external_ids(conn: Connection, *, workspace: str, canonical_id: str) -> dict[str, str]:
    """Every system id linked to one canonical id, by system (not ids the system merged
    away: they still resolve here, but the record's id there is the surviving one)."""
    query = sa.select(crosswalk.c.system, crosswalk.c.external_id).where(
        crosswalk.c.workspace == workspace,
        crosswalk.c.canonical_id == canonical_id,
        crosswalk.c.reason != MERGED_AWAY,
    )
    return {system: external_id for system, external_id in conn.execute(query)}


def link(
    conn: Connection,
    *,
    workspace: str,
    entity: str,
    system: str,
    external_id: str,
    canonical_id: str,
    reason: str,
    at: datetime,
    score: float | None = None,
) -> bool:
    """Link a system id to a canonical id; False if the same link exists already."""
    existing = find_canonical_id(
        conn, workspace=workspace, entity=entity, system=system, external_id=external_id
    )
    if existing == canonical_id:
        return False
    if existing is not None:
        raise LinkConflictError(
            f"{system} {entity} {external_id} is already linked to {existing}, not {canonical_id}"
        )
    conn.execute(
        sa.insert(crosswalk).values(
            workspace=workspace,
            entity=entity,
            system=system,
            external_id=external_id,
            canonical_id=canonical_id,
            reason=reason,
            linked_at=at,
            score=score,
        )
    )
    return True


def get_golden(conn: Connection, entity: str, canonical_id: str) -> dict[str, Any] | None:
    """One golden record as a dict of its columns."""
    table = GOLDEN[entity]
    row = conn.execute(sa.select(table).where(table.c.id == canonical_id)).mappings().first()
    return dict(row) if row else None


def insert_golden(conn: Connection, entity: str, values: dict[str, Any]) -> None:
    """Insert a new golden record."""
    conn.execute(sa.insert(GOLDEN[entity]).values(**values))


def update_golden(conn: Connection, entity: str, canonical_id: str, values: dict[str, Any]) -> None:
    """Update a golden record's columns and bump its version."""
    table = GOLDEN[entity]
    conn.execute(
        sa.update(table)
        .where(table.c.id == canonical_id)
        .values(**values, version=table.c.version + 1)
    )


def list_golden(conn: Connection, entity: str, *, workspace: str) -> list[dict[str, Any]]:
    """Every golden record of an entity in a workspace, oldest first."""
    table = GOLDEN[entity]
    query = sa.select(table).where(table.c.workspace == workspace).order_by(table.c.id)
    return [dict(r) for r in conn.execute(query).mappings()]


def subscription_statuses(conn: Connection, *, customer_id: str) -> list[str]:
    """The statuses of a customer's subscriptions."""
    table = GOLDEN["subscription"]
    query = sa.select(table.c.status).where(table.c.customer_id == customer_id)
    return [s for (s,) in conn.execute(query) if s]


def get_source_record(
    conn: Connection, *, workspace: str, system: str, object_type: str, external_id: str
) -> dict[str, Any] | None:
    """The latest snapshot we hold of one source record."""
    query = sa.select(source_records).where(
        source_records.c.workspace == workspace,
        source_records.c.system == system,
        source_records.c.object_type == object_type,
        source_records.c.external_id == external_id,
    )
    row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def save_source_record(conn: Connection, values: dict[str, Any], *, exists: bool) -> None:
    """Insert or replace the snapshot of one source record."""
    if not exists:
        conn.execute(sa.insert(source_records).values(**values))
        return
    key = ("workspace", "system", "object_type", "external_id")
    conn.execute(
        sa.update(source_records)
        .where(*[source_records.c[k] == values[k] for k in key])
        .values(**{k: v for k, v in values.items() if k not in key})
    )


def record_provenance(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Replace the provenance of the given golden fields."""
    for row in rows:
        conn.execute(
            sa.delete(field_provenance).where(
                field_provenance.c.workspace == row["workspace"],
                field_provenance.c.entity == row["entity"],
                field_provenance.c.canonical_id == row["canonical_id"],
                field_provenance.c.field == row["field"],
            )
        )
    if rows:
        conn.execute(sa.insert(field_provenance), rows)


def provenance_of(
    conn: Connection, *, workspace: str, entity: str, canonical_id: str
) -> dict[str, dict[str, Any]]:
    """The provenance of each field of one golden record."""
    query = sa.select(field_provenance).where(
        field_provenance.c.workspace == workspace,
        field_provenance.c.entity == entity,
        field_provenance.c.canonical_id == canonical_id,
    )
    return {r["field"]: dict(r) for r in conn.execute(query).mappings()}


def record_conflict(conn: Connection, values: dict[str, Any]) -> None:
    """Record a value from a non-owner that disagrees with the owner."""
    conn.execute(sa.insert(conflicts).values(**values))


def count_conflicts(conn: Connection, *, workspace: str) -> int:
    """How many conflicts are recorded."""
    query = (
        sa.select(sa.func.count()).select_from(conflicts).where(conflicts.c.workspace == workspace)
    )
    return int(conn.execute(query).scalar_one())


def replace_lines(
    conn: Connection, *, workspace: str, invoice_id: str, lines: list[dict[str, Any]]
) -> None:
    """Replace an invoice's lines."""
    conn.execute(sa.delete(invoice_lines).where(invoice_lines.c.invoice_id == invoice_id))
    if lines:
        conn.execute(
            sa.insert(invoice_lines),
            [{"workspace": workspace, "invoice_id": invoice_id, **line} for line in lines],
        )


def lines_of(conn: Connection, invoice_id: str) -> list[dict[str, Any]]:
    """An invoice's lines in order."""
    query = (
        sa.select(invoice_lines)
        .where(invoice_lines.c.invoice_id == invoice_id)
        .order_by(invoice_lines.c.position)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def page_golden(
    conn: Connection,
    entity: str,
    *,
    workspace: str,
    limit: int,
    starting_after: str | None,
    updated_since: datetime | None,
) -> tuple[list[dict[str, Any]], bool]:
    """A page of an entity's golden records in one workspace, in id order."""
    table = GOLDEN[entity]
    query = sa.select(table).where(table.c.workspace == workspace)
    if updated_since is not None:
        query = query.where(table.c.updated_at >= updated_since)
    return keyset_page(conn, query, table.c.id, limit=limit, starting_after=starting_after)


def get_golden_in(
    conn: Connection, entity: str, *, workspace: str, canonical_id: str
) -> dict[str, Any] | None:
    """One golden record, only if it belongs to the workspace."""
    table = GOLDEN[entity]
    query = sa.select(table).where(table.c.id == canonical_id, table.c.workspace == workspace)
    row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def external_ids_of(
    conn: Connection, *, workspace: str, canonical_ids: list[str]
) -> dict[str, dict[str, str]]:
    """Every system id of each canonical id, by canonical id then system."""
    if not canonical_ids:
        return {}
    query = sa.select(crosswalk.c.canonical_id, crosswalk.c.system, crosswalk.c.external_id).where(
        crosswalk.c.workspace == workspace,
        crosswalk.c.canonical_id.in_(canonical_ids),
        crosswalk.c.reason != MERGED_AWAY,
    )
    links: dict[str, dict[str, str]] = {}
    for canonical_id, system, external_id in conn.execute(query):
        links.setdefault(canonical_id, {})[system] = external_id
    return links


def lock_source_record(
    conn: Connection, *, workspace: str, system: str, object_type: str, external_id: str
) -> None:
    """PostgreSQL: serialise concurrent applies of one source record until commit.

    Two transactions resolving the same record at once would otherwise both decide it is new.
    SQLite has a single writer, so nothing is needed there.
    """
    if conn.dialect.name != "postgresql":
        return
    key = "\x1f".join((workspace, system, object_type, external_id)).encode()
    lock_id = int.from_bytes(hashlib.sha256(key).digest()[:8], "big", signed=True)
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_id)))
