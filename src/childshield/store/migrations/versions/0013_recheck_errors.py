"""why a takedown item's last re-check proved nothing

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 21:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("takedown_items") as batch:
        batch.add_column(sa.Column("last_error", sa.String(length=200), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("takedown_items") as batch:
        batch.drop_column("last_error")
