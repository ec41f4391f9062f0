"""Tables and queries for partner webhook endpoints and their sealed signing secrets."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from synchub.db import UtcDateTime, keyset_page, metadata
from synchub.webhooks.model import Endpoint, SecretVersion

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("workspace", sa.String(40), nullable=False, index=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("description", sa.String(500), nullable=False),
    sa.Column("event_types", sa.JSON, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("disabled_reason", sa.String(20)),
    sa.Column("disabled_at", UtcDateTime),
    sa.Column("failing_since", UtcDateTime),
    sa.Column("failure_notified_at", UtcDateTime),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

webhook_endpoint_secrets = sa.Table(
    "webhook_endpoint_secrets",
    metadata,
    sa.Column(
        "endpoint_id",
        sa.String(40),
        sa.ForeignKey("webhook_endpoints.id"),
        primary_key=True,
    ),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sealed", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime),
)

_E = webhook_endpoints.c
_S = webhook_endpoint_secrets.c


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(
        id=row["id"],
        workspace=row["workspace"],
        url=row["url"],
        description=row["description"],
        event_types=tuple(row["event_types"]),
        enabled=bool(row["enabled"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        disabled_reason=row["disabled_reason"],
        disabled_at=row["disabled_at"],
        failing_since=row["failing_since"],
        failure_notified_at=row["failure_notified_at"],
    )


def insert_endpoint(conn: Connection, endpoint: Endpoint) -> None:
    """Store a new endpoint."""
    values = {**asdict(endpoint), "event_types": list(endpoint.event_types)}
    conn.execute(sa.insert(webhook_endpoints).values(**values))


def find_endpoint(
    conn: Connection, endpoint_id: str, *, workspace: str | None = None, lock: bool = False
) -> Endpoint | None:
    """One endpoint (of a workspace when given); `lock` holds its row until commit (PG)."""
    query = sa.select(webhook_endpoints).where(_E.id == endpoint_id)
    if workspace is not None:
        query = query.where(_E.workspace == workspace)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return _endpoint(row) if row else None


def page_endpoints(
    conn: Connection, *, workspace: str, limit: int, starting_after: str | None
) -> tuple[list[Endpoint], bool]:
    """A workspace's endpoints in id (creation) order."""
    query = sa.select(webhook_endpoints).where(_E.workspace == workspace)
    rows, more = keyset_page(conn, query, _E.id, limit=limit, starting_after=starting_after)
    return [_endpoint(r) for r in rows], more


def endpoints_of(
    conn: Connection, workspaces: Collection[str], *, share_lock: bool = False
) -> list[Endpoint]:
    """Every endpoint of some workspaces, enabled or not, in id order. With `share_lock`
    (PostgreSQL), the rows stay share-locked until the transaction ends, so an enable or
    disable (which locks the row for update) waits for it, or is seen by it."""
    query = sa.select(webhook_endpoints).where(_E.workspace.in_(list(workspaces))).order_by(_E.id)
    if share_lock and conn.dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    return [_endpoint(r) for r in conn.execute(query).mappings()]


def update_endpoint(conn: Connection, endpoint_id: str, **values: Any) -> None:
    """Change columns of one endpoint."""
    if "event_types" in values:
        values["event_types"] = list(values["event_types"])
    conn.execute(sa.update(webhook_endpoints).where(_E.id == endpoint_id).values(**values))


def start_failing(conn: Connection, endpoint_id: str, *, at: datetime) -> None:
    """Mark the start of a run of failures, unless one is already running."""
    conn.execute(
        sa.update(webhook_endpoints)
        .where(_E.id == endpoint_id, _E.failing_since.is_(None))
        .values(failing_since=at)
    )


def delete_endpoint(conn: Connection, endpoint_id: str) -> None:
    """Delete an endpoint and its secrets."""
    conn.execute(sa.delete(webhook_endpoint_secrets).where(_S.endpoint_id == endpoint_id))
    conn.execute(sa.delete(webhook_endpoints).where(_E.id == endpoint_id))


def insert_secret(
    conn: Connection, endpoint_id: str, version: SecretVersion, *, sealed: bytes
) -> None:
    """Store one sealed secret version."""
    conn.execute(
        sa.insert(webhook_endpoint_secrets).values(
            endpoint_id=endpoint_id,
            version=version.version,
            sealed=sealed,
            created_at=version.created_at,
            expires_at=version.expires_at,
        )
    )


def secrets_of(conn: Connection, endpoint_id: str) -> list[tuple[SecretVersion, bytes]]:
    """An endpoint's secret versions with their sealed values, newest first."""
    query = (
        sa.select(webhook_endpoint_secrets)
        .where(_S.endpoint_id == endpoint_id)
        .order_by(_S.version.desc())
    )
    return [
        (SecretVersion(r["version"], r["created_at"], r["expires_at"]), bytes(r["sealed"]))
        for r in conn.execute(query).mappings()
    ]


def expire_secrets(conn: Connection, endpoint_id: str, *, at: datetime) -> None:
    """Set the end of use for every secret that would otherwise be used past `at`."""
    conn.execute(
        sa.update(webhook_endpoint_secrets)
        .where(_S.endpoint_id == endpoint_id, sa.or_(_S.expires_at.is_(None), _S.expires_at > at))
        .values(expires_at=at)
    )


def delete_expired_secrets(conn: Connection, endpoint_id: str, *, now: datetime) -> None:
    """Forget secrets no longer used for signing."""
    conn.execute(
        sa.delete(webhook_endpoint_secrets).where(
            _S.endpoint_id == endpoint_id, _S.expires_at <= now
        )
    )
