"""what a decision's allow-list suppressed, a review form's failed submission, a reviewer's pace

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08 10:00:00

The kinds of match a review rejection rejected go in the allow-list entries' labels (no column:
``matching.kinds``).
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("suppressed", sa.JSON(), nullable=True))
    with op.batch_alter_table("web_sessions") as batch:
        batch.add_column(sa.Column("flash", sa.JSON(), nullable=True))
    op.create_index("ix_reviews_user_at", "reviews", ["user_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_reviews_user_at", table_name="reviews")
    with op.batch_alter_table("web_sessions") as batch:
        batch.drop_column("flash")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("suppressed")
