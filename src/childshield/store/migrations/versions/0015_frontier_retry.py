"""causes of failures (crawl URLs, RDAP lookups, re-checks, notices), for counting and requeueing

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

COLUMNS = {
    "crawl_urls": "cause",
    "ip_lookups": "cause",
    "takedown_items": "last_cause",
    "notices": "cause",
}


def upgrade() -> None:
    for table, column in COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column(column, sa.String(length=32), nullable=False, server_default=""))


def downgrade() -> None:
    for table, column in COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
