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
from childshield.hashing.result import HashOutcome
from childshield.signals import orb
from childshield.signals.vpdq import DEFAULT_MIN_QUALITY, FrameSignal, to_text
from childshield.store.db import Database
from childshield.store.models import (
    DEFAULT_THRESHOLDS,
    Bank,
    BankKind,
    Entry,
    EntryState,
    LocalFeatures,
    SignalType,
    utcnow,
)
from childshield.store.revision import bump

BATCH = 2000
T = TypeVar("T")


class ImportRefused(BankError):
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
    """Frame hashes of videos stored (each pointing to its video's SHA-256 entry)."""


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (containers)
        return ""


def _insert_ignoring_duplicates(session: Session, values: list[dict[str, Any]]) -> int:
    """Insert rows; rows whose signal is already in the bank are left alone.  Returns rows added."""
    if not values:
        return 0
    dialect = session.get_bind().dialect.name
    table: Any = Entry.__table__
    stmt: Any
    # One statement compiled once, run over all rows (SQLAlchemy batches them as multi-row VALUES);
    # RETURNING counts what was really inserted (rowcount is not reliable for skipped conflicts).
    if dialect == "postgresql":
        stmt = pg_insert(table).on_conflict_do_nothing(constraint="uq_entry_signal")
    elif dialect == "sqlite":
        stmt = sqlite_insert(table).on_conflict_do_nothing()
    else:  # pragma: no cover - other databases: one at a time
        added = 0
        for row in values:
            exists = session.scalar(
                select(Entry.id).where(
                    Entry.bank_id == row["bank_id"],
                    Entry.signal_type == row["signal_type"],
                    Entry.signal == row["signal"],
                )
            )
            if exists is None:
                session.add(Entry(**row))
                added += 1
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
) -> ImportReport:
    """Import parsed rows.  Malformed rows are reported by line and skipped, or (strict) refuse it all."""
    if strict and parsed.errors:
        raise ImportRefused(parsed.errors)
    report = ImportReport(skipped=list(parsed.errors))
    duplicates_in_file = len(parsed.rows)
    rows = list(_dedupe(parsed.rows, lambda r: (r.signal_type.value, r.signal)))
    duplicates_in_file -= len(rows)
    _store(
        db,
        bank_name,
        (
            {
                "signal_type": r.signal_type,
                "signal": r.signal,
                "external_id": r.external_id,
                "labels": list(r.labels),
                "source": source,
                "source_name": source_name,
            }
            for r in rows
        ),
        report,
    )
    report.already_present += duplicates_in_file
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
    frames: list[tuple[str, dict[str, Any]]] = []  # (the video's SHA-256, a frame's row)
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
        if r.is_video:  # the video is the item (its SHA-256 entry); its frames point to it
            for f in r.frames:
                if f.pdq is None:
                    continue
                row = {**base, "signal_type": SignalType.PDQ, "signal": f.pdq, "quality": f.pdq_quality}
                mark = frame_variant(f.timestamp or 0.0)
                frames.append((r.sha256, {**row, "variant": mark}))
                for variant, value in (f.pdq_bank_variants or {}).items():  # the frame's crops, turns
                    frames.append(
                        (r.sha256, {**row, "signal": value, "variant": f"{mark}{EDIT_MARK}{variant}"})
                    )
        else:
            signals += [(SignalType.PDQ, f.pdq, f.pdq_quality) for f in r.frames if f.pdq is not None]
        for kind, value, quality in signals:
            rows.append({**base, "signal_type": kind, "signal": value, "quality": quality})
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
        if frames:
            _store_frames(session, bank.id, revision, frames, report)
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
    item is a SHA-256 entry of the signal's canonical vPDQ text, its frames point to it.  Frames of
    quality under 50 are left out, as vPDQ's matching leaves them out."""
    frames = [f for f in frames if f.quality >= DEFAULT_MIN_QUALITY]
    if not frames:
        raise BankError("the video signal has no frame of quality 50 or more")
    text = to_text(frames)
    video = hashlib.sha256(text.encode()).hexdigest()
    base = {"source": "vpdq", "source_name": source_name, "labels": list(labels)}
    report = ImportReport()
    rows = [{**base, "signal_type": SignalType.SHA256, "signal": video, "external_id": external_id}]
    frame_rows = [
        (video, {**base, "signal_type": SignalType.PDQ, "signal": f.pdq, "quality": f.quality,
                 "variant": frame_variant(f.timestamp)})
        for f in frames
    ]  # fmt: skip
    with db.session() as session:
        bank = find_bank_row(session, bank_name)
        revision = bump(session)
        _store_in(session, bank.id, revision, rows, report)
        _store_frames(session, bank.id, revision, frame_rows, report)
    return report


def video_signal(db: Database, bank_name: str, item_id: int) -> list[FrameSignal]:
    """The frames of a banked video (for vPDQ export), in time order; empty if it is not a video."""
    with db.session() as session:
        bank = find_bank_row(session, bank_name)
        rows = session.execute(
            select(Entry.signal, Entry.quality, Entry.variant).where(
                Entry.bank_id == bank.id,
                Entry.parent_id == item_id,
                Entry.variant.like(f"{FRAME_PREFIX}%"),
                Entry.variant.not_like(f"%{EDIT_MARK}%"),
            )
        ).all()
    frames = [
        FrameSignal(signal, quality or 0, frame_time(variant) or 0.0) for signal, quality, variant in rows
    ]
    frames.sort(key=lambda f: f.timestamp)
    return [FrameSignal(f.pdq, f.quality, f.timestamp, n) for n, f in enumerate(frames)]


def _store_frames(
    session: Session,
    bank_id: int,
    revision: int,
    frames: list[tuple[str, dict[str, Any]]],
    report: ImportReport,
) -> None:
    """Frame entries of videos, each pointing to its video's SHA-256 entry.  A frame whose hash is in
    the bank already (another item, or the same picture earlier in the video) is not stored again."""
    parents = _ids_by_signal(session, bank_id, SignalType.SHA256, (sha for sha, _ in frames))
    rows = [{**row, "parent_id": parents[sha]} for sha, row in frames if sha in parents]
    unique = list(_dedupe(rows, lambda r: ("pdq", r["signal"])))
    counted = ImportReport()
    _store_in(session, bank_id, revision, unique, counted)
    report.video_frames += counted.added


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
    """Entries of a bank, items' own signals only unless ``variants`` (then each carries its item)."""
    with db.session() as session:
        bank = find_bank_row(session, bank_name)
        query = select(Entry).where(Entry.bank_id == bank.id, Entry.state.in_(list(states)))
        if not variants:
            query = query.where(Entry.parent_id.is_(None))
        entries = session.scalars(query.order_by(Entry.id)).all()
        rows = []
        for e in entries:
            row: dict[str, Any] = {
                "signal_type": SignalType(e.signal_type).value,
                "signal": e.signal,
                "external_id": e.external_id,
                "labels": list(e.labels or []),
                # Provenance, in JSON Lines only (CSV keeps the four list columns):
                "entry_id": e.id,
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
        return rows


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
    # No bank condition here: with one, SQLite walks the bank's whole index instead of the two lookups.
    stmt = update(Entry).where(or_(Entry.id == entry_id, Entry.parent_id == entry_id))
    values = {
        "state": state,
        "state_reason": reason.strip(),
        "state_changed_at": dt.datetime.now(dt.UTC),
        "revision": bump(session),
    }
    return int(getattr(session.execute(stmt.values(values)), "rowcount", 0) or 0)
