"""notice and takedown: providers, RDAP lookups, followed items and notices

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 14:00:00
"""

import sqlalchemy as sa
from alembic import op

from childshield.store.migrations.helpers import at as _at

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "providers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("abuse_email", sa.String(length=320), nullable=False),
        sa.Column("contact_override", sa.String(length=320), nullable=False),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_table(
        "ip_lookups",
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.Column("network", sa.String(length=64), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        _at("looked_up_at"),
        sa.ForeignKeyConstraint(["provider_id"], ["providers.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("ip"),
    )
    op.create_table(
        "takedown_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("url_hash", sa.String(length=64), nullable=False),
        sa.Column("page_url", sa.Text(), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=True),
        sa.Column("hit_id", sa.Integer(), nullable=True),
        sa.Column("bank", sa.String(length=100), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("md5", sa.String(length=32), nullable=False),
        sa.Column("pdq", sa.String(length=64), nullable=True),
        _at("found_at"),
        sa.Column("state", sa.String(length=16), nullable=False),
        _at("removed_at", True),
        sa.Column("removal", sa.String(length=32), nullable=False),
        _at("first_notice_at", True),
        _at("last_notice_at", True),
        sa.Column("notices", sa.Integer(), nullable=False),
        _at("escalated_at", True),
        _at("next_check_at"),
        _at("last_checked_at", True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("reupload_of", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["provider_id"], ["providers.id"]),
        sa.ForeignKeyConstraint(["hit_id"], ["crawl_hits.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["reupload_of"], ["takedown_items.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("url_hash"),
    )
    op.create_index("ix_takedown_due", "takedown_items", ["state", "next_check_at"])
    op.create_table(
        "notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("escalation", sa.Boolean(), nullable=False),
        sa.Column("to_addr", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _at("next_at"),
        _at("created_at"),
        _at("sent_at", True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["provider_id"], ["providers.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reference"),
        sa.UniqueConstraint("message_id"),
    )
    op.create_index("ix_notices_state", "notices", ["state", "next_at"])


def downgrade() -> None:
    op.drop_index("ix_notices_state", table_name="notices")
    op.drop_table("notices")
    op.drop_index("ix_takedown_due", table_name="takedown_items")
    op.drop_table("takedown_items")
    op.drop_table("ip_lookups")
    op.drop_table("providers")
