"""store revision counter and entry revisions (the persisted PDQ index catches up from them)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 20:10:00
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    meta = op.create_table(
        "store_meta",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance", sa.String(length=36), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("reset_revision", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(meta, [{"id": 1, "instance": str(uuid.uuid4()), "revision": 0, "reset_revision": 0}])
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revision", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.create_index("ix_entries_revision", ["revision"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.drop_index("ix_entries_revision")
        batch_op.drop_column("revision")
    op.drop_table("store_meta")
