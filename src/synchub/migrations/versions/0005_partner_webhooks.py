"""partner webhooks: endpoints, secrets, delivery log

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import synchub.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The delivery log is the deliveries table itself (destination `webhook:<endpoint id>`).
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace", sa.String(length=40), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=20), nullable=True),
        sa.Column("disabled_at", synchub.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("failing_since", synchub.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("failure_notified_at", synchub.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", synchub.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", synchub.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_endpoints_workspace"), ["workspace"], unique=False
        )

    op.create_table(
        "webhook_endpoint_secrets",
        sa.Column("endpoint_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", synchub.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", synchub.db.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_endpoint_secrets_endpoint_id_webhook_endpoints"),
        ),
        sa.PrimaryKeyConstraint("endpoint_id", "version", name=op.f("pk_webhook_endpoint_secrets")),
    )


def downgrade() -> None:
    op.drop_table("webhook_endpoint_secrets")
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_endpoints_workspace"))

    op.drop_table("webhook_endpoints")
