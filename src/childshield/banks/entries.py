"""Entries of banks: add from media, import and export hash lists, change an entry's state."""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    exists,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from childshield.banks.errors import BankError, EntryNotFound, InvalidBankSetting
from childshield.banks.formats import Parsed, RowError
from childshield.banks.policy import Policy
from childshield.banks.service import find_bank_row
from childshield.errors import Refused
from childshield.hashing.result import HashOutcome
from childshield.signals import orb
from childshield.signals.vpdq import DEFAULT_MIN_QUALITY, FrameSignal, to_compact_json, to_text
from childshield.store.db import Database
from childshield.store.models import (
    DEFAULT_THRESHOLDS,
    Bank,
    BankKind,
    Entry,
    EntryState,
    LocalFeatures,
    SignalType,
    VideoFrame,
    utcnow,
)
from childshield.store.revision import bump

BATCH = 2000
PROGRESS_EVERY = 1000
"""Rows between two calls of an import's ``progress``."""
T = TypeVar("T")


class ImportRefused(Refused, BankError):
    """A strict import found malformed rows; nothing was written."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        self.errors = list(errors)
        first = ", ".join(f"line {e.line}: {e.message}" for e in self.errors[:3])
        more = f" (and {len(self.errors) - 3} more)" if len(self.errors) > 3 else ""
        super().__init__(f"{len(self.errors)} malformed row(s), nothing imported: {first}{more}")


@dataclass
class ImportReport:
    added: int = 0
    already_present: int = 0
    skipped: list[RowError] = field(default_factory=list)
    variants: int = 0
    """Variant entries stored (hashes of standard edits of items added from media)."""
    local_features: int = 0
    """Items whose local features (the second check's) were stored."""
    video_frames: int = 0
    """Frames of videos stored (frames and their crops, each listed under its video)."""
    item_id: int | None = None
    """For one video added: its item (the SHA-256 entry)."""


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (containers)
        return ""


def _insert_ignoring_duplicates(
    session: Session, values: list[dict[str, Any]], *, table: Any = None, constraint: str = "uq_entry_signal"
) -> int:
    """Insert rows; rows that break ``constraint`` (an entry: its signal is already in the bank) are
    left alone.  Returns rows added."""
    if not values:
        return 0
    dialect = session.get_bind().dialect.name
    table = Entry.__table__ if table is None else table
    stmt: Any
    # One statement compiled once, run over all rows (SQLAlchemy batches them as multi-row VALUES);
    # RETURNING counts what was really inserted (rowcount is not reliable for skipped conflicts).
    if dialect == "postgresql":
        stmt = pg_insert(table).on_conflict_do_nothing(constraint=constraint)
    elif dialect == "sqlite":
        stmt = sqlite_insert(table).on_conflict_do_nothing()
    else:  # pragma: no cover - other databases: one at a time
        added = 0
        for row in values:
            try:
                with session.begin_nested():
                    session.execute(insert(table), [row])
                added += 1
            except Exception:  # the row is there already
                continue
        return added
    result = session.connection().execute(stmt.returning(table.c.id), values)
    return len(result.all())


def _store(
    db: Database, bank_name: str, rows: Iterable[dict[str, Any]], report: ImportReport
) -> ImportReport:
    """All rows in one transaction: an import is atomic."""
    if db.engine.dialect.name == "sqlite":
        return _store_staged(db, bank_name, rows, report)
    with db.session() as session:
        bank = find_bank_row(session, bank_name)
        _store_in(session, bank.id, bump(session), rows, report)
    return report


_STAGING = Table(
    "import_staging",
    MetaData(),
    Column("n", Integer, primary_key=True),
    Column("signal_type", Entry.__table__.c.signal_type.type),
    Column("signal", String(128)),
    Column("quality", Integer),
    Column("external_id", String(200)),
    Column("labels", JSON),
    Column("source", String(32)),
    Column("source_name", Text),
    prefixes=["TEMPORARY"],
)


def _store_staged(
    db: Database, bank_name: str, rows: Iterable[dict[str, Any]], report: ImportReport
) -> ImportReport:
    """SQLite has one write lock for the whole database: written row by row, a million-row import would
    hold it for a minute and every matched upload's decision would wait that long.  So the rows go first,
    in batches, to a temporary table of this connection (no lock on the database), and then into the
    bank in one ``INSERT ... SELECT``: still one transaction (all or nothing, duplicates ignored), holding
    the lock only while SQLite copies them."""
    with db.engine.connect() as connection:
        connection.exec_driver_sql("DROP TABLE IF EXISTS temp.import_staging")
        _STAGING.create(connection)
        connection.commit()
        try:
            seen = _stage(connection, rows)
            connection.exec_driver_sql("PRAGMA cache_size = -262144")  # 256 MiB: the copy's index pages
            connection.commit()  # the session below must begin (and commit) the transaction, not join one
            with Session(bind=connection) as session, session.begin():
                bank = find_bank_row(session, bank_name)
                revision = bump(session)
                entries: Any = Entry.__table__
                copy = select(
                    literal(bank.id, Integer),
                    *(_STAGING.c[c] for c in _STAGED),
                    literal(utcnow(), entries.c.added_at.type),
                    literal(_user(), entries.c.added_by.type),
                    literal(EntryState.ACTIVE, entries.c.state.type),
                    literal("", entries.c.state_reason.type),
                    literal(revision, entries.c.revision.type),
                    literal("", entries.c.variant.type),
                ).where(true())  # SQLite reads "SELECT ... FROM t ON CONFLICT" as a join without a WHERE
                # In the unique index's order: its pages fill in sequence instead of at random.
                ordered = copy.order_by(_STAGING.c.signal_type, _STAGING.c.signal)
                columns = [*_COPIED, "revision", "variant"]
                added = session.execute(
                    sqlite_insert(entries).from_select(columns, ordered).on_conflict_do_nothing()
                )
                report.added += int(added.rowcount)  # type: ignore[attr-defined]
        finally:
            connection.rollback()  # nothing is pending unless the copy failed
            connection.exec_driver_sql("DROP TABLE IF EXISTS temp.import_staging")
            connection.exec_driver_sql("PRAGMA cache_size = -2000")  # SQLite's default, for the pool
            connection.commit()
    report.already_present += seen - report.added
    return report


def _stage(connection: Connection, rows: Iterable[dict[str, Any]]) -> int:
    """Write the rows to the staging table, sorted by signal; returns how many."""
    seen = 0
    batch: list[dict[str, Any]] = []
    for row in rows:
        seen += 1
        batch.append({c: row.get(c) for c in _STAGED} | {"labels": row.get("labels") or []})
        if len(batch) >= BATCH * 10:
            connection.execute(insert(_STAGING), batch)
            batch = []
    if batch:
        connection.execute(insert(_STAGING), batch)
    connection.exec_driver_sql("CREATE INDEX temp.ix_import_staging ON import_staging (signal_type, signal)")
    connection.commit()
    return seen


_STAGED = ("signal_type", "signal", "quality", "external_id", "labels", "source", "source_name")
_COPIED = ("bank_id", *_STAGED, "added_at", "added_by", "state", "state_reason")


def _store_in(
    session: Session, bank_id: int, revision: int, rows: Iterable[dict[str, Any]], report: ImportReport
) -> None:
    now = utcnow()
    user = _user()
    batch: list[dict[str, Any]] = []
    seen = 0

    def flush() -> None:
        nonlocal batch
        report.added += _insert_ignoring_duplicates(session, batch)
        batch = []

    for row in rows:
        seen += 1
        batch.append(
            {
                "parent_id": None,
                "variant": "",
                **row,
                "bank_id": bank_id,
                "added_at": now,
                "added_by": user,
                "state": EntryState.ACTIVE,
                "revision": revision,
            }
        )
        if len(batch) >= BATCH:
            flush()
    flush()
    report.already_present += seen - report.added


def add_signals_in(
    session: Session,
    bank_name: str,
    signals: Sequence[tuple[SignalType, str]],
    *,
    source: str,
    source_name: str,
    create_negative: bool = False,
    labels: Sequence[str] = (),
) -> int:
    """Add normalised ``signals`` to a bank inside the caller's transaction (so they land with whatever
    made them, or not at all); with ``create_negative`` a missing bank is made as a negative bank.
    Returns how many were new (signals there already are left as they are)."""
    bank = session.scalar(select(Bank).where(Bank.name == bank_name))
    if bank is None:
        if not create_negative:
            find_bank_row(session, bank_name)  # raises BankNotFound
        bank = Bank(
            name=bank_name,
            kind=BankKind.NEGATIVE,
            enabled=True,
            thresholds=dict(DEFAULT_THRESHOLDS),
            description="False matches rejected in review (an allow-list)",
            policy={},
        )
        session.add(bank)
        session.flush()
    elif create_negative and bank.kind is not BankKind.NEGATIVE:
        raise BankError(f"{bank_name!r} is not a negative bank: false matches are not added to it")
    report = ImportReport()
    rows = [
        {
            "signal_type": kind,
            "signal": value,
            "source": source,
            "source_name": source_name,
            "labels": list(labels),
        }
        for kind, value in dict.fromkeys(signals)
    ]
    _store_in(session, bank.id, bump(session), rows, report)
    return report.added


def _dedupe(rows: Iterable[T], key: Callable[[T], tuple[str, str]]) -> Iterator[T]:
    """Rows with the first occurrence of each (signal type, signal) only."""
    seen: set[tuple[str, str]] = set()
    for row in rows:
        k = key(row)
        if k not in seen:
            seen.add(k)
            yield row


def import_rows(
    db: Database,
    bank_name: str,
    parsed: Parsed,
    *,
    source_name: str,
    strict: bool = False,
    source: str = "import",
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import parsed rows.  Malformed rows are reported by line and skipped, or (strict) refuse it all.
    Videos (``vpdq`` rows) are stored as ``add_video_signal`` stores them, after the other rows, in a
    transaction of their own.  ``progress(done, total)`` is called as the other rows are written (every
    ``PROGRESS_EVERY`` and at the end; the bank then takes them in one step)."""
    unusable = [
        RowError(v.line, "the video signal has no frame of quality 50 or more")
        for v in parsed.videos
        if not any(f.quality >= DEFAULT_MIN_QUALITY for f in v.frames)
    ]
    if strict and (parsed.errors or unusable):
        raise ImportRefused([*parsed.errors, *unusable])
    report = ImportReport(skipped=sorted([*parsed.errors, *unusable], key=lambda e: e.line))
    duplicates_in_file = len(parsed.rows)
    rows = list(_dedupe(parsed.rows, lambda r: (r.signal_type.value, r.signal)))
    duplicates_in_file -= len(rows)

    def values() -> Iterator[dict[str, Any]]:
        for done, r in enumerate(rows, 1):
            yield {
                "signal_type": r.signal_type,
                "signal": r.signal,
                "external_id": r.external_id,
                "labels": list(r.labels),
                "source": source,
                "source_name": source_name,
            }
            if progress is not None and (done % PROGRESS_EVERY == 0 or done == len(rows)):
                progress(done, len(rows))

    _store(db, bank_name, values(), report)
    report.already_present += duplicates_in_file
    videos = [v for v in parsed.videos if any(f.quality >= DEFAULT_MIN_QUALITY for f in v.frames)]
    if videos:
        with db.session() as session:
            bank = find_bank_row(session, bank_name)
            revision = bump(session)
            for v in videos:
                frames = [f for f in v.frames if f.quality >= DEFAULT_MIN_QUALITY]
                add_video_signal_in(session, bank.id, revision, frames, report, source_name=source_name,
                                    labels=v.labels, external_id=v.external_id)  # fmt: skip
        report.item_id = None
    return report


def add_outcomes(
    db: Database, bank_name: str, outcomes: Iterable[HashOutcome], *, labels: Sequence[str] = ()
) -> ImportReport:
    """Store the signals of hashed files (never the media): PDQ (quality recorded), MD5, SHA-1, SHA-256,
    and, when the bank's policy asks and the files were hashed with them, the bank-side PDQ variants
    (each pointing to its item's own PDQ entry)."""
    report = ImportReport()
    rows: list[dict[str, Any]] = []
    variants: list[tuple[str, dict[str, Any]]] = []  # (the item's own PDQ, the variant's row)
    features: dict[str, bytes] = {}  # the item's own PDQ -> its packed local features
    videos: list[VideoRows] = []
    for outcome in outcomes:
        if outcome.result is None:
            report.skipped.append(RowError(0, f"{outcome.path}: {outcome.error}"))
            continue
        r = outcome.result
        name = outcome.path.rsplit("/", 1)[-1]
        base = {"source": "file", "source_name": name, "labels": list(labels), "external_id": None}
        signals: list[tuple[SignalType, str, int | None]] = [
            (SignalType.MD5, r.md5, None),
            (SignalType.SHA1, r.sha1, None),
            (SignalType.SHA256, r.sha256, None),
        ]
        if r.is_video:  # one item, its SHA-256 entry: its MD5, SHA-1 and frames point to it
            video = VideoRows(r.sha256, (r.md5, r.sha1), base)
            for f in r.frames:
                if f.pdq is None:
                    continue
                video.frames.append((f.index, f.timestamp or 0.0, f.pdq_quality, f.pdq, ""))
                for variant, value in (f.pdq_bank_variants or {}).items():  # the frame's crops, turns
                    video.frames.append((f.index, f.timestamp or 0.0, f.pdq_quality, value, variant))
            videos.append(video)
        else:
            signals += [(SignalType.PDQ, f.pdq, f.pdq_quality) for f in r.frames if f.pdq is not None]
        for kind, value, quality in signals:
            rows.append({**base, "signal_type": kind, "signal": value, "quality": quality})
        if r.is_video:
            continue
        for f in r.frames:
            if f.pdq is not None and f.local_features is not None:
                features.setdefault(f.pdq, f.local_features)
            for variant, value in (f.pdq_bank_variants or {}).items():
                if f.pdq is not None:
                    row = {**base, "signal_type": SignalType.PDQ, "signal": value, "quality": f.pdq_quality}
                    variants.append((f.pdq, {**row, "variant": variant}))
    unique = list(_dedupe(rows, lambda r: (SignalType(r["signal_type"]).value, r["signal"])))
    with db.session() as session:
        bank = find_bank_row(session, bank_name)
        revision = bump(session)
        _store_in(session, bank.id, revision, unique, report)
        report.already_present += len(rows) - len(unique)
        policy = Policy.of(bank.policy)
        if videos:
            _store_videos(session, bank.id, revision, videos, report)
        if variants and policy.bank_variants:
            _store_variants(session, bank.id, revision, variants, report)
        if features and policy.orb_check:
            _store_features(session, bank.id, features, report)
    return report


FRAME_PREFIX = "frame@"
EDIT_MARK = "|"
"""Between a frame's mark and the name of an edit of it: ``frame@12.000|crop6@0,0.5``."""


def frame_variant(timestamp: float) -> str:
    """How a video's frame entry is marked (``frame@12.000``: seconds from the start)."""
    return f"{FRAME_PREFIX}{timestamp:.3f}"


def frame_time(variant: str) -> float | None:
    """The timestamp of a frame entry's mark (or of an edit of that frame); None for anything else."""
    if not variant.startswith(FRAME_PREFIX):
        return None
    try:
        return float(variant[len(FRAME_PREFIX) :].split(EDIT_MARK, 1)[0])
    except ValueError:
        return None


@dataclass
class VideoRows:
    """A video to store: its SHA-256 (the item), its other digests, and its frames."""

    sha256: str
    digests: tuple[str, ...]
    """Its MD5 and SHA-1 (a video known by its vPDQ signal alone has none)."""
    base: dict[str, Any]
    """Provenance and labels of every entry it makes."""
    frames: list[tuple[int, float, int, str, str]] = field(default_factory=list)
    """(frame number, seconds, quality, PDQ hex, edit: empty for the frame itself)."""


def add_video_signal(
    db: Database,
    bank_name: str,
    frames: Sequence[FrameSignal],
    *,
    source_name: str,
    labels: Sequence[str] = (),
    external_id: str | None = None,
) -> ImportReport:
    """Store a video known only by its vPDQ signal (imported from another organisation's list): the
    item is a SHA-256 entry of the signal's canonical vPDQ text, its frames (with their own numbers)
    point to it.  Frames of quality under 50 are left out, as vPDQ's matching leaves them out.
    ``report.item_id`` is the item."""
    frames = [f for f in frames if f.quality >= DEFAULT_MIN_QUALITY]
    if not frames:
        raise BankError("the video signal has no frame of quality 50 or more")
    report = ImportReport()
    with db.session() as session:
        bank = find_bank_row(session, bank_name)
        add_video_signal_in(
            session, bank.id, bump(session), frames, report,
            source_name=source_name, labels=labels, external_id=external_id,
        )  # fmt: skip
    return report


def add_video_signal_in(
    session: Session,
    bank_id: int,
    revision: int,
    frames: Sequence[FrameSignal],
    report: ImportReport,
    *,
    source_name: str,
    labels: Sequence[str] = (),
    external_id: str | None = None,
) -> None:
    text = to_text(frames)
    video = VideoRows(
        hashlib.sha256(text.encode()).hexdigest(),
        (),
        {"source": "vpdq", "source_name": source_name, "labels": list(labels), "external_id": external_id},
        [(f.number, f.timestamp, f.quality, f.pdq, "") for f in frames],
    )
    _store_in(session, bank_id, revision, [{**video.base, "signal_type": SignalType.SHA256,
                                            "signal": video.sha256}], report)  # fmt: skip
    _store_videos(session, bank_id, revision, [video], report)


def find_video(db: Database, bank_name: str, reference: str) -> int | None:
    """The item id of a banked video named by its item id, or by any digest of it (the file's MD5,
    SHA-1 or SHA-256, or for a video imported as vPDQ the SHA-256 its import reported); None if the bank
    has no such video."""
    text = reference.strip().lower()
    with db.session() as session:
        bank = find_bank_row(session, bank_name)
        if text.isdigit():
            candidates = [int(text)]
        else:
            candidates = [
                int(parent or entry_id)
                for entry_id, parent in session.execute(
                    select(Entry.id, Entry.parent_id).where(
                        Entry.bank_id == bank.id,
                        Entry.signal_type.in_([SignalType.MD5, SignalType.SHA1, SignalType.SHA256]),
                        Entry.signal == text,
                    )
                )
            ]
        for item in candidates:
            found = session.scalar(
                select(VideoFrame.item_id)
                .join(Entry, Entry.id == VideoFrame.item_id)
                .where(VideoFrame.item_id == item, Entry.bank_id == bank.id)
                .limit(1)
            )
            if found is not None:
                return int(found)
    return None


def video_signal(db: Database, bank_name: str, item_id: int) -> list[FrameSignal]:
    """The frames of a banked video (for vPDQ export) with their own numbers, in order; empty if it is
    not a video of that bank."""
    with db.session() as session:
        bank = find_bank_row(session, bank_name)
        return _video_frames(session, bank.id, [item_id]).get(item_id, [])


def _video_frames(session: Session, bank_id: int, items: Sequence[int]) -> dict[int, list[FrameSignal]]:
    out: dict[int, list[FrameSignal]] = {}
    wanted = sorted(set(items))
    for i in range(0, len(wanted), 500):
        rows = session.execute(
            select(
                VideoFrame.item_id, Entry.signal, VideoFrame.quality, VideoFrame.timestamp, VideoFrame.number
            )
            .join(Entry, Entry.id == VideoFrame.entry_id)
            .where(
                VideoFrame.item_id.in_(wanted[i : i + 500]),
                VideoFrame.variant == "",
                Entry.bank_id == bank_id,
            )
            .order_by(VideoFrame.item_id, VideoFrame.number)
        )
        for item, signal, quality, seconds, number in rows:
            out.setdefault(int(item), []).append(
                FrameSignal(signal, int(quality), float(seconds), int(number))
            )
    return out


def _store_videos(
    session: Session, bank_id: int, revision: int, videos: list[VideoRows], report: ImportReport
) -> None:
    """Each video's frames: a PDQ entry per hash (stored once per bank, marked with the first video's
    time and pointing to it), and the video's own list of its frames (``VideoFrame``), so a hash that
    another item holds already is still a frame of this one.  The video's MD5 and SHA-1 entries point
    to its SHA-256 entry: one item, one match."""
    parents = _ids_by_signal(session, bank_id, SignalType.SHA256, (v.sha256 for v in videos))
    for v in videos:
        if v.sha256 in parents and v.digests:
            session.execute(
                update(Entry)
                .where(
                    Entry.bank_id == bank_id,
                    Entry.signal_type.in_([SignalType.MD5, SignalType.SHA1]),
                    Entry.signal.in_(list(v.digests)),
                    Entry.parent_id.is_(None),
                )
                .values(parent_id=parents[v.sha256], revision=revision)
            )
    rows = [
        {**v.base, "signal_type": SignalType.PDQ, "signal": pdq, "quality": quality,
         "variant": frame_variant(seconds) + (f"{EDIT_MARK}{edit}" if edit else ""),
         "parent_id": parents[v.sha256]}
        for v in videos if v.sha256 in parents
        for _, seconds, quality, pdq, edit in v.frames
    ]  # fmt: skip
    _store_in(session, bank_id, revision, list(_dedupe(rows, lambda r: ("pdq", r["signal"]))), ImportReport())
    ids = _pdq_ids(session, bank_id, (r["signal"] for r in rows))
    links = list(
        {
            (parents[v.sha256], number, edit): {
                "item_id": parents[v.sha256], "entry_id": ids[pdq], "number": number,
                "timestamp": seconds, "quality": quality, "variant": edit,
            }
            for v in videos if v.sha256 in parents
            for number, seconds, quality, pdq, edit in v.frames
            if pdq in ids
        }.values()
    )  # fmt: skip
    for i in range(0, len(links), BATCH):
        report.video_frames += _insert_ignoring_duplicates(
            session, links[i : i + BATCH], table=VideoFrame.__table__, constraint="uq_video_frame"
        )
    if len(videos) == 1 and videos[0].sha256 in parents:
        report.item_id = parents[videos[0].sha256]


def _pdq_ids(session: Session, bank_id: int, signals: Iterable[str]) -> dict[str, int]:
    """Entry ids of a bank's PDQ entries (items, variants and frames alike), by signal."""
    out: dict[str, int] = {}
    wanted = sorted(set(signals))
    for i in range(0, len(wanted), 500):
        out.update(
            (signal, entry_id)
            for entry_id, signal in session.execute(
                select(Entry.id, Entry.signal).where(
                    Entry.bank_id == bank_id,
                    Entry.signal_type == SignalType.PDQ,
                    Entry.signal.in_(wanted[i : i + 500]),
                )
            )
        )
    return out


def _own_pdq_ids(session: Session, bank_id: int, signals: Iterable[str]) -> dict[str, int]:
    """Entry ids of items' own PDQ entries (not variants) in a bank, by signal."""
    return _ids_by_signal(session, bank_id, SignalType.PDQ, signals)


def _ids_by_signal(
    session: Session, bank_id: int, kind: SignalType, signals: Iterable[str]
) -> dict[str, int]:
    """Entry ids of items' own entries (no variants, no frames) of one signal type in a bank, by signal."""
    out: dict[str, int] = {}
    wanted = sorted(set(signals))
    for i in range(0, len(wanted), 500):
        out.update(
            (signal, entry_id)
            for entry_id, signal in session.execute(
                select(Entry.id, Entry.signal).where(
                    Entry.bank_id == bank_id,
                    Entry.signal_type == kind,
                    Entry.parent_id.is_(None),
                    Entry.signal.in_(wanted[i : i + 500]),
                )
            )
        )
    return out


def _store_features(session: Session, bank_id: int, features: dict[str, bytes], report: ImportReport) -> None:
    """Local features of items that have none yet (an item added again keeps its first)."""
    owners = _own_pdq_ids(session, bank_id, features)
    ids = sorted(owners.values())
    have: set[int] = set()
    for i in range(0, len(ids), 500):
        have.update(
            session.scalars(
                select(LocalFeatures.entry_id).where(LocalFeatures.entry_id.in_(ids[i : i + 500]))
            )
        )
    rows = [
        {"entry_id": entry_id, "bank_id": bank_id, "kind": orb.KIND, "data": features[signal]}
        for signal, entry_id in owners.items()
        if entry_id not in have
    ]
    if rows:
        session.execute(insert(LocalFeatures), rows)
    report.local_features += len(rows)


def _store_variants(
    session: Session,
    bank_id: int,
    revision: int,
    variants: list[tuple[str, dict[str, Any]]],
    report: ImportReport,
) -> None:
    parents = _own_pdq_ids(session, bank_id, (own for own, _ in variants))
    rows = [{**row, "parent_id": parents[own]} for own, row in variants if own in parents]
    unique = list(_dedupe(rows, lambda r: ("pdq", r["signal"])))
    counted = ImportReport()
    _store_in(session, bank_id, revision, unique, counted)
    report.variants += counted.added


def export_rows(
    db: Database,
    bank_name: str,
    *,
    states: Sequence[EntryState] = (EntryState.ACTIVE,),
    variants: bool = False,
) -> list[dict[str, Any]]:
    """Entries of a bank, items' own signals only unless ``variants`` (then each carries its item).
    A video's frames follow its SHA-256 row as one ``vpdq`` row, in the ``threatexchange`` package's
    vPDQ signal format (a JSON list of ``pdq,quality,seconds``), with the video's labels."""
    with db.session() as session:
        bank = find_bank_row(session, bank_name)
        query = select(Entry).where(Entry.bank_id == bank.id, Entry.state.in_(list(states)))
        if not variants:  # a video's MD5 and SHA-1 point to its SHA-256 entry but are its own signals
            query = query.where(or_(Entry.parent_id.is_(None), Entry.signal_type != SignalType.PDQ))
        entries = session.scalars(query.order_by(Entry.id)).all()
        own_sha256 = [e.id for e in entries if e.parent_id is None and e.signal_type == SignalType.SHA256]
        videos = _video_frames(session, bank.id, own_sha256)
        rows = []
        for e in entries:
            row: dict[str, Any] = {
                "signal_type": SignalType(e.signal_type).value,
                "signal": e.signal,
                "external_id": e.external_id,
                "labels": list(e.labels or []),
                # Provenance, in JSON Lines only (CSV keeps the four list columns):
                "entry_id": e.id,
                "item_id": e.parent_id or e.id,
                "quality": e.quality,
                "source": e.source,
                "source_name": e.source_name,
                "state": EntryState(e.state).value,
                "added_at": e.added_at.isoformat(),
            }
            if variants:
                row["variant"] = e.variant
                row["parent_id"] = e.parent_id
            rows.append(row)
            if e.id in videos:
                rows.append(
                    {**row, "signal_type": VPDQ, "signal": to_compact_json(videos[e.id]), "quality": None}
                )
        return rows


VPDQ = "vpdq"
"""A whole video's frames as one row of a hash list (the ``threatexchange`` package's name)."""


def set_entry_state(db: Database, bank_name: str, entry_id: int, state: EntryState, reason: str = "") -> None:
    """Mark an entry active, disputed or disabled, with the reason (disabled entries stop matching)."""
    if state is not EntryState.ACTIVE and not reason.strip():
        raise InvalidBankSetting("a reason is required to dispute or disable an entry")
    with db.session() as session:
        bank = find_bank_row(session, bank_name)
        if not set_state_in(session, entry_id, state, reason, bank_id=bank.id):
            raise EntryNotFound(f"bank {bank_name!r} has no entry {entry_id}")


def set_state_in(
    session: Session, entry_id: int, state: EntryState, reason: str, *, bank_id: int | None = None
) -> int:
    """Set an entry's state within a transaction; an item's variants follow it (a disabled item is not
    found through its edits either).  Returns the rows changed."""
    if bank_id is not None:
        owner = session.scalar(select(Entry.bank_id).where(Entry.id == entry_id))
        if owner != bank_id:
            return 0
    # A frame hash this item shares with another video stays as it is: that video still holds it (and
    # is disabled through its own item).  No bank condition here: with one, SQLite walks the bank's
    # whole index instead of the lookups.
    shared = exists().where(VideoFrame.entry_id == Entry.id, VideoFrame.item_id != entry_id)
    stmt = update(Entry).where(or_(Entry.id == entry_id, and_(Entry.parent_id == entry_id, ~shared)))
    values = {
        "state": state,
        "state_reason": reason.strip(),
        "state_changed_at": dt.datetime.now(dt.UTC),
        "revision": bump(session),
    }
    return int(getattr(session.execute(stmt.values(values)), "rowcount", 0) or 0)
