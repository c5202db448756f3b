"""reports to clearinghouses and their files

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 14:50:00
"""

import sqlalchemy as sa
from alembic import op

from childshield.store.migrations.helpers import at as _at

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("destination", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("remote_id", sa.BigInteger(), nullable=True),
        sa.Column("document", sa.Text(), nullable=False),
        _at("created_at"),
        _at("next_at"),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        _at("done_at", True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_reports_state", "reports", ["state", "next_at"])
    op.create_table(
        "report_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("evidence_id", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.String(length=300), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("remote_file_id", sa.String(length=100), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["report_id"], ["reports.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"]),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("report_files")
    op.drop_index("ix_reports_state", table_name="reports")
    op.drop_table("reports")
