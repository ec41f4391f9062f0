"""golden records: match candidates, crosswalk history, merges

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import synchub.db

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Matching (ADR 0016): keys per source record, candidates for review, every crosswalk
    # change, and merges with what an unmerge needs.
    op.create_table(
        "crosswalk_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("workspace", sa.String(length=40), nullable=False),
        sa.Column("entity", sa.String(length=30), nullable=False),
        sa.Column("system", sa.String(length=40), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("canonical_id", sa.String(length=40), nullable=False),
        sa.Column("previous_id", sa.String(length=40), nullable=True),
        sa.Column("rule", sa.String(length=80), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("changed_at", synchub.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crosswalk_history")),
    )
    with op.batch_alter_table("crosswalk_history", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_crosswalk_history_canonical_id"), ["canonical_id"], unique=False
        )
        batch_op.create_index(
            "ix_crosswalk_history_source",
            ["workspace", "entity", "system", "external_id"],
            unique=False,
        )

    op.create_table(
        "match_candidates",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace", sa.String(length=40), nullable=False),
        sa.Column("entity", sa.String(length=30), nullable=False),
        sa.Column("system", sa.String(length=40), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("canonical_id", sa.String(length=40), nullable=False),
        sa.Column("target_id", sa.String(length=40), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", synchub.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("decided_at", synchub.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=120), nullable=True),
        sa.Column("merge_id", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_match_candidates")),
        sa.UniqueConstraint(
            "workspace",
            "entity",
            "system",
            "external_id",
            "target_id",
            name="uq_match_candidates_pair",
        ),
    )
    with op.batch_alter_table("match_candidates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_match_candidates_canonical_id"), ["canonical_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_match_candidates_target_id"), ["target_id"], unique=False
        )
        batch_op.create_index(
            "ix_match_candidates_workspace_status", ["workspace", "status", "id"], unique=False
        )

    op.create_table(
        "match_keys",
        sa.Column("workspace", sa.String(length=40), nullable=False),
        sa.Column("entity", sa.String(length=30), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("value", sa.String(length=320), nullable=False),
        sa.Column("system", sa.String(length=40), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("canonical_id", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint(
            "workspace",
            "entity",
            "kind",
            "value",
            "system",
            "external_id",
            name=op.f("pk_match_keys"),
        ),
    )
    with op.batch_alter_table("match_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_match_keys_canonical_id"), ["canonical_id"], unique=False
        )
        batch_op.create_index(
            "ix_match_keys_source", ["workspace", "system", "external_id"], unique=False
        )

    op.create_table(
        "merges",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace", sa.String(length=40), nullable=False),
        sa.Column("entity", sa.String(length=30), nullable=False),
        sa.Column("survivor_id", sa.String(length=40), nullable=False),
        sa.Column("merged_id", sa.String(length=40), nullable=False),
        sa.Column("rule", sa.String(length=40), nullable=False),
        sa.Column("candidate_id", sa.String(length=40), nullable=True),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("undo", sa.JSON(), nullable=False),
        sa.Column("merged_at", synchub.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("unmerged_at", synchub.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merges")),
    )
    with op.batch_alter_table("merges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_merges_merged_id"), ["merged_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_merges_survivor_id"), ["survivor_id"], unique=False)

    with op.batch_alter_table("crosswalk", schema=None) as batch_op:
        batch_op.add_column(sa.Column("score", sa.Float(), nullable=True))

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tax_id", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("tax_id")

    with op.batch_alter_table("crosswalk", schema=None) as batch_op:
        batch_op.drop_column("score")

    op.drop_table("merges")
    op.drop_table("match_keys")
    op.drop_table("match_candidates")
    op.drop_table("crosswalk_history")
