"""review items folded by content: an open item's content key, its sightings

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 20:30:00
"""

import sqlalchemy as sa
from alembic import op

from childshield.store.migrations.helpers import at as _at

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

OPEN = ("pending", "escalated")


def upgrade() -> None:
    op.add_column("review_items", sa.Column("open_key", sa.String(length=64), nullable=True))
    op.add_column("review_items", sa.Column("sightings", sa.Integer(), nullable=False, server_default="1"))
    op.add_column("review_items", _at("last_seen_at", True))
    op.create_index("uq_review_items_open_key", "review_items", ["open_key"], unique=True)
    op.create_table(
        "review_sightings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("decision_id", sa.Integer(), nullable=False),
        _at("at"),
        sa.ForeignKeyConstraint(["item_id"], ["review_items.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["decision_id"], ["decisions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("decision_id"),
    )
    op.create_index("ix_review_sightings_item", "review_sightings", ["item_id", "id"])
    _fold_existing()


def _fold_existing() -> None:
    """Every item is its own first sighting; open items of the same content (SHA-256) fold into the oldest,
    except those someone already reviewed or revealed (their history stays with them)."""
    bind = op.get_bind()
    bind.execute(
        sa.text(
            "INSERT INTO review_sightings (item_id, decision_id, at) "
            "SELECT id, decision_id, created_at FROM review_items ORDER BY id"
        )
    )
    rows = bind.execute(
        sa.text(
            "SELECT i.id, d.sha256, "
            "(SELECT count(*) FROM reviews r WHERE r.item_id = i.id) "
            "+ (SELECT count(*) FROM reveals v WHERE v.item_id = i.id) "
            "FROM review_items i JOIN decisions d ON d.id = i.decision_id "
            "WHERE i.state IN ('pending', 'escalated') AND d.sha256 IS NOT NULL ORDER BY i.id"
        )
    ).all()
    keeper: dict[str, int] = {}
    for item_id, sha256, touched in rows:
        if sha256 not in keeper:
            keeper[sha256] = item_id
            bind.execute(
                sa.text("UPDATE review_items SET open_key = :k WHERE id = :i"), {"k": sha256, "i": item_id}
            )
        elif not touched:
            into = {"to": keeper[sha256], "i": item_id}
            bind.execute(sa.text("UPDATE review_sightings SET item_id = :to WHERE item_id = :i"), into)
            bind.execute(sa.text("DELETE FROM review_items WHERE id = :i"), into)
    for item_id in keeper.values():
        bind.execute(
            sa.text(
                "UPDATE review_items SET sightings = "
                "(SELECT count(*) FROM review_sightings s WHERE s.item_id = :i) WHERE id = :i"
            ),
            {"i": item_id},
        )


def downgrade() -> None:
    op.drop_index("ix_review_sightings_item", table_name="review_sightings")
    op.drop_table("review_sightings")
    op.drop_index("uq_review_items_open_key", table_name="review_items")
    with op.batch_alter_table("review_items", schema=None) as batch_op:
        batch_op.drop_column("last_seen_at")
        batch_op.drop_column("sightings")
        batch_op.drop_column("open_key")
