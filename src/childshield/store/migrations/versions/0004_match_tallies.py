"""hourly match tallies per entry (flood protection)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 21:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "match_tallies",
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["entry_id"], ["entries.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("entry_id", "hour"),
    )


def downgrade() -> None:
    op.drop_table("match_tallies")
