"""delivery reliability: circuit breakers, redacted last responses

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import synchub.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "destination_health",
        sa.Column("workspace", sa.String(length=40), nullable=False),
        sa.Column("destination", sa.String(length=80), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("probes_succeeded", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("opened_at", synchub.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("open_until", synchub.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("paused_until", synchub.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("window_since", synchub.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_failure_at", synchub.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", synchub.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("workspace", "destination", name=op.f("pk_destination_health")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_response", sa.JSON(), nullable=True))
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("response", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("workspace", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("destination", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("breaker_signal", sa.String(length=20), nullable=True))
        batch_op.create_index(
            "ix_delivery_attempts_window",
            ["workspace", "destination", "finished_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_attempts_window")
        batch_op.drop_column("breaker_signal")
        batch_op.drop_column("destination")
        batch_op.drop_column("workspace")
        batch_op.drop_column("response")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("last_response")
    op.drop_table("destination_health")
