"""the evidence vault

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 14:40:00
"""

import sqlalchemy as sa
from alembic import op

from childshield.store.migrations.helpers import at as _at

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evidence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("content_id", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("pdq", sa.String(length=64), nullable=True),
        sa.Column("classification", sa.String(length=32), nullable=True),
        _at("preserved_at"),
        _at("retain_until"),
        sa.Column("hold", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=True),
        sa.Column("nonce", sa.LargeBinary(), nullable=True),
        sa.Column("sealed", sa.LargeBinary(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        _at("deleted_at", True),
        sa.Column("deleted_reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["review_items.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("item_id"),
    )
    op.create_index("ix_evidence_retain", "evidence", ["retain_until"])


def downgrade() -> None:
    op.drop_index("ix_evidence_retain", table_name="evidence")
    op.drop_table("evidence")
