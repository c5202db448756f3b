"""entry variants (hashes of standard edits of an item) and per-bank matching policy

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 21:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs (SQLite allows a REFERENCES clause on a column added with a NULL default): no
    # rebuild of the entries table, which for millions of entries would take many minutes.
    if op.get_bind().dialect.name == "sqlite":  # alembic would rebuild the table for the constraint
        op.execute(
            "ALTER TABLE entries ADD COLUMN parent_id INTEGER"
            " CONSTRAINT fk_entries_parent REFERENCES entries (id) ON DELETE CASCADE"
        )
    else:
        op.add_column("entries", sa.Column("parent_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            "fk_entries_parent", "entries", "entries", ["parent_id"], ["id"], ondelete="CASCADE"
        )
    op.add_column("entries", sa.Column("variant", sa.String(length=40), nullable=False, server_default=""))
    op.create_index("ix_entries_parent", "entries", ["parent_id"], unique=False)
    op.add_column("banks", sa.Column("policy", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("banks", schema=None) as batch_op:
        batch_op.drop_column("policy")
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.drop_index("ix_entries_parent")
        batch_op.drop_constraint("fk_entries_parent", type_="foreignkey")
        batch_op.drop_column("variant")
        batch_op.drop_column("parent_id")
