"""the review queue: kept (sealed) media, review items, reviews, reveals and web sessions

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 13:20:00
"""

import sqlalchemy as sa
from alembic import op

from childshield.store.migrations.helpers import at as _at

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("decisions", sa.Column("context", sa.JSON(), nullable=True))
    op.create_table(
        "kept_media",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("content_id", sa.String(length=64), nullable=False),
        _at("created_at"),
        _at("expires_at"),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("content_id"),
    )
    op.create_index("ix_kept_media_expires", "kept_media", ["expires_at"])
    op.create_table(
        "review_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("decision_id", sa.Integer(), nullable=False),
        sa.Column("content_id", sa.String(length=64), nullable=False),
        _at("created_at"),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("required", sa.Integer(), nullable=False),
        sa.Column("classification", sa.String(length=32), nullable=True),
        _at("settled_at", True),
        sa.Column("media_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["decision_id"], ["decisions.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["media_id"], ["kept_media.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("decision_id"),
        sa.UniqueConstraint("content_id"),
    )
    op.create_index("ix_review_items_state", "review_items", ["state", "id"])
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("classification", sa.String(length=32), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("ruling", sa.Boolean(), nullable=False),
        _at("at"),
        sa.ForeignKeyConstraint(["item_id"], ["review_items.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("item_id", "user_id"),
    )
    op.create_table(
        "reveals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        _at("at"),
        sa.ForeignKeyConstraint(["item_id"], ["review_items.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_reveals_item_session", "reveals", ["item_id", "session_id"])
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        _at("created_at"),
        _at("seen_at"),
        sa.Column("reviewed", sa.Integer(), nullable=False),
        sa.Column("since_break", sa.Integer(), nullable=False),
        _at("break_at"),
        sa.Column("blur", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_column("decisions", "context")
    op.drop_table("web_sessions")
    op.drop_index("ix_reveals_item_session", table_name="reveals")
    op.drop_table("reveals")
    op.drop_table("reviews")
    op.drop_index("ix_review_items_state", table_name="review_items")
    op.drop_table("review_items")
    op.drop_index("ix_kept_media_expires", table_name="kept_media")
    op.drop_table("kept_media")
