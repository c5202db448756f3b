"""the frames of banked videos, each listed by its video (a hash another item holds is no longer lost)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 16:00:00
"""

from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_entries = sa.table(
    "entries",
    sa.column("id", sa.Integer),
    sa.column("bank_id", sa.Integer),
    sa.column("signal_type", sa.String),
    sa.column("quality", sa.Integer),
    sa.column("parent_id", sa.Integer),
    sa.column("variant", sa.String),
    sa.column("source_name", sa.Text),
    sa.column("added_at"),  # untyped: compared with the very value read (SQLite keeps text)
)
_frames = sa.table(
    "video_frames",
    sa.column("item_id", sa.Integer),
    sa.column("entry_id", sa.Integer),
    sa.column("number", sa.Integer),
    sa.column("timestamp", sa.Float),
    sa.column("quality", sa.Integer),
    sa.column("variant", sa.String),
)


def upgrade() -> None:
    op.create_table(
        "video_frames",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("timestamp", sa.Float(), nullable=False),
        sa.Column("quality", sa.Integer(), nullable=False),
        sa.Column("variant", sa.String(length=40), server_default="", nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["entries.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["entry_id"], ["entries.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("item_id", "number", "variant", name="uq_video_frame"),
    )
    op.create_index("ix_video_frames_entry", "video_frames", ["entry_id"], unique=False)
    _backfill(op.get_bind())


def _backfill(bind: sa.engine.Connection) -> None:
    """Frames stored before (a PDQ entry pointing to its video, marked ``frame@SECONDS``, its crops
    ``frame@SECONDS|crop...``) are listed as their video's frames, numbered in time order (their real
    numbers were not kept); a video's MD5 and SHA-1 entries, added with it just before its SHA-256 entry,
    become part of that item."""
    rows = bind.execute(
        sa.select(_entries.c.id, _entries.c.parent_id, _entries.c.variant, _entries.c.quality).where(
            _entries.c.parent_id.is_not(None), _entries.c.variant.like("frame@%")
        )
    ).all()
    by_video: dict[int, list[tuple[float, str, int, int]]] = defaultdict(list)
    for entry_id, parent_id, variant, quality in rows:
        mark, _, edit = str(variant).partition("|")
        try:
            seconds = float(mark.removeprefix("frame@"))
        except ValueError:
            continue
        by_video[int(parent_id)].append((seconds, edit, int(entry_id), int(quality or 0)))
    links = []
    for video, frames in by_video.items():
        numbers = {t: n for n, t in enumerate(sorted({t for t, edit, _, _ in frames if not edit}))}
        links += [
            {
                "item_id": video,
                "entry_id": e,
                "number": numbers[t],
                "timestamp": t,
                "quality": q,
                "variant": edit,
            }
            for t, edit, e, q in frames
            if t in numbers
        ]
    for i in range(0, len(links), 1000):
        bind.execute(sa.insert(_frames), links[i : i + 1000])
    for video in by_video:
        own = bind.execute(
            sa.select(_entries.c.bank_id, _entries.c.source_name, _entries.c.added_at).where(
                _entries.c.id == video
            )
        ).first()
        if own is None:
            continue
        bind.execute(
            sa.update(_entries)
            .where(
                _entries.c.id.in_([video - 1, video - 2]),
                _entries.c.signal_type.in_(["md5", "sha1"]),
                _entries.c.parent_id.is_(None),
                _entries.c.bank_id == own.bank_id,
                _entries.c.source_name == own.source_name,
                _entries.c.added_at == own.added_at,
            )
            .values(parent_id=video)
        )


def downgrade() -> None:
    op.execute(sa.update(_entries).where(_entries.c.signal_type.in_(["md5", "sha1"])).values(parent_id=None))
    op.drop_index("ix_video_frames_entry", table_name="video_frames")
    op.drop_table("video_frames")
