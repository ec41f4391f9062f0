"""canonical model additions: contacts, refunds, invoice line tax

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import synchub.db

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ADDRESS_COLUMNS = (
    "address_line1",
    "address_line2",
    "address_city",
    "address_region",
    "address_postal_code",
)


def _golden_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("deleted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", synchub.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", synchub.db.UtcDateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    # ADR 0017: contact persons and refunds as golden records; customers keep their address;
    # invoice lines carry their tax, invoices their line-amount type and the recorded tax
    # rounding difference.
    op.create_table(
        "contacts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=True),
        sa.Column("account_id", sa.String(length=40), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("role", sa.Text(), nullable=True),
        *_golden_columns(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
    )
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_contacts_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_contacts_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_contacts_email"), ["email"], unique=False)
        batch_op.create_index(batch_op.f("ix_contacts_workspace"), ["workspace"], unique=False)

    op.create_table(
        "refunds",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace", sa.String(length=40), nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=True),
        sa.Column("customer_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("refunded_at", synchub.db.UtcDateTime(timezone=True), nullable=True),
        *_golden_columns(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
    )
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_refunds_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_refunds_payment_id"), ["payment_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_refunds_workspace"), ["workspace"], unique=False)

    with op.batch_alter_table("customers", schema=None) as batch_op:
        for column in ADDRESS_COLUMNS:
            batch_op.add_column(sa.Column(column, sa.Text(), nullable=True))

    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("line_amount_type", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("tax_rounding_minor", sa.BigInteger(), nullable=True))

    with op.batch_alter_table("invoice_lines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quantity_decimal", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("unit_amount_decimal", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("tax_minor", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("tax_type", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("tax_rate", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invoice_lines", schema=None) as batch_op:
        for column in ("tax_rate", "tax_type", "tax_minor", "unit_amount_decimal",
                       "quantity_decimal"):  # fmt: skip
            batch_op.drop_column(column)
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_column("tax_rounding_minor")
        batch_op.drop_column("line_amount_type")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        for column in reversed(ADDRESS_COLUMNS):
            batch_op.drop_column(column)
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refunds_workspace"))
        batch_op.drop_index(batch_op.f("ix_refunds_payment_id"))
        batch_op.drop_index(batch_op.f("ix_refunds_customer_id"))
    op.drop_table("refunds")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contacts_workspace"))
        batch_op.drop_index(batch_op.f("ix_contacts_email"))
        batch_op.drop_index(batch_op.f("ix_contacts_customer_id"))
        batch_op.drop_index(batch_op.f("ix_contacts_account_id"))
    op.drop_table("contacts")
