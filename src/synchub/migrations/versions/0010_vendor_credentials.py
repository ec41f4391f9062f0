"""vendor credentials: versioned data keys, sealed OAuth tokens and API keys, pending
authorizations (ADR 0023)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import synchub.db

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vault_keys",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("kek_id", sa.String(length=16), nullable=False),
        sa.Column("created_at", synchub.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("retired_at", synchub.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_vault_keys")),
    )
    op.create_table(
        "vendor_credentials",
        sa.Column("workspace", sa.String(length=40), nullable=False),
        sa.Column("connection", sa.String(length=80), nullable=False),
        sa.Column("system", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("access_expires_at", synchub.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("scope", sa.Text(), nullable=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("authorized_at", synchub.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("refreshed_at", synchub.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column(
            "needs_reauthorization_since", synchub.db.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", synchub.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("workspace", "connection", name=op.f("pk_vendor_credentials")),
    )
    op.create_table(
        "vendor_oauth_states",
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("workspace", sa.String(length=40), nullable=False),
        sa.Column("connection", sa.String(length=80), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("verifier", sa.LargeBinary(), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("created_at", synchub.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", synchub.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("state_hash", name=op.f("pk_vendor_oauth_states")),
    )
    with op.batch_alter_table("vendor_oauth_states", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_vendor_oauth_states_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("vendor_oauth_states", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vendor_oauth_states_expires_at"))
    op.drop_table("vendor_oauth_states")
    op.drop_table("vendor_credentials")
    op.drop_table("vault_keys")
