"""the crawl frontier, per-site counters and hits

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 13:40:00
"""

import sqlalchemy as sa
from alembic import op

from childshield.store.migrations.helpers import at as _at

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crawl_urls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("url_hash", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=255), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("hint", sa.String(length=8), nullable=False),
        sa.Column("seed", sa.Boolean(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("reporter_ref", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _at("next_at"),
        _at("leased_until", True),
        _at("added_at"),
        _at("fetched_at", True),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("final_url", sa.Text(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("matched", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["parent_id"], ["crawl_urls.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("url_hash"),
    )
    op.create_index("ix_crawl_next", "crawl_urls", ["state", "priority", "depth", "id"])
    op.create_index("ix_crawl_lease", "crawl_urls", ["state", "leased_until"])
    op.create_index("ix_crawl_site", "crawl_urls", ["site"])
    op.create_table(
        "crawl_sites",
        sa.Column("site", sa.String(length=255), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("media", sa.Integer(), nullable=False),
        sa.Column("matches", sa.Integer(), nullable=False),
        sa.Column("since_match", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("site"),
    )
    op.create_table(
        "crawl_hits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url_id", sa.Integer(), nullable=False),
        sa.Column("page_id", sa.Integer(), nullable=True),
        sa.Column("media_url", sa.Text(), nullable=False),
        sa.Column("page_url", sa.Text(), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.Column("bank", sa.String(length=100), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("check", sa.String(length=16), nullable=False),
        sa.Column("distance", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("md5", sa.String(length=32), nullable=False),
        sa.Column("pdq", sa.String(length=64), nullable=True),
        _at("found_at"),
        sa.ForeignKeyConstraint(["url_id"], ["crawl_urls.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["page_id"], ["crawl_urls.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("url_id", "bank", "item_id"),
    )


def downgrade() -> None:
    op.drop_table("crawl_hits")
    op.drop_table("crawl_sites")
    op.drop_index("ix_crawl_site", table_name="crawl_urls")
    op.drop_index("ix_crawl_lease", table_name="crawl_urls")
    op.drop_index("ix_crawl_next", table_name="crawl_urls")
    op.drop_table("crawl_urls")
