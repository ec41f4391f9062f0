"""conflicts: a status (open/resolved), who resolved them and where they were found

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import synchub.db

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Reconciliation (issue 5): a conflict stays open until the system that disagreed agrees
    # with the golden record again (a later reconcile sees it), or a repair put it right.
    with op.batch_alter_table("conflicts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(length=20), server_default="open", nullable=False)
        )
        batch_op.add_column(
            sa.Column("found_by", sa.String(length=20), server_default="ingest", nullable=False)
        )
        batch_op.add_column(
            sa.Column("resolved_at", synchub.db.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("resolved_by", sa.String(length=120), nullable=True))
        batch_op.create_index("ix_conflicts_status", ["workspace", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("conflicts", schema=None) as batch_op:
        batch_op.drop_index("ix_conflicts_status")
        batch_op.drop_column("resolved_by")
        batch_op.drop_column("resolved_at")
        batch_op.drop_column("found_by")
        batch_op.drop_column("status")
