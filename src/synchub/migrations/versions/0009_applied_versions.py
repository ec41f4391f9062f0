"""stale-write guard: applied snapshot versions per destination; replay time of deliveries

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import synchub.db

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADR 0021: the newest snapshot of each record that each destination was sent, so a
    # replayed older one never rolls the destination back; a replay keeps `created_at` and
    # notes its own time.
    op.create_table(
        "applied_versions",
        sa.Column("workspace", sa.String(length=40), nullable=False),
        sa.Column("destination", sa.String(length=80), nullable=False),
        sa.Column("canonical_id", sa.String(length=40), nullable=False),
        sa.Column("applied_seq", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("applied_at", synchub.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "workspace", "destination", "canonical_id", name=op.f("pk_applied_versions")
        ),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("replayed_at", synchub.db.UtcDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("replayed_at")
    op.drop_table("applied_versions")
