"""The PDQ index of every bank's entries: persisted beside the database, caught up, never rebuilt in full.

A snapshot holds every PDQ entry (all states, all banks) as arrays: hash, entry id, bank id, active flag,
and the multi-index tables.  Opening one maps the files (seconds, whatever the size), then reads only the
entries written after the snapshot's store revision (see ``store.revision``): new entries are added to the
index, state changes flip the item's flag.  Bank settings (enabled, threshold) are applied as per-item
thresholds when the banks are read, so they need no rebuild either.  A snapshot is rebuilt from the
database only when it is missing, damaged, of another database, or older than a change that deleted
entries; it is saved again when many changes have piled up.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from childshield.errors import Conflict
from childshield.index.pdq_flat import pack_hex
from childshield.index.pdq_mih import PdqMihIndex
from childshield.store.db import Database, data_dir
from childshield.store.models import Entry, EntryState, SignalType
from childshield.store.revision import read_state

log = logging.getLogger(__name__)

ENV_INDEX_DIR = "CHILDSHIELD_INDEX_DIR"
FORMAT = 2
SAVE_AFTER = 20_000
"""Changes applied at open beyond which the caught-up snapshot is saved (so the next open is quick)."""
READ_BATCH = 100_000

I64 = npt.NDArray[np.int64]
ArrayT = TypeVar("ArrayT", bound=npt.NDArray[Any])


def default_index_dir(db: Database) -> Path | None:
    """Where a database's snapshot lives: ``$CHILDSHIELD_INDEX_DIR``, else beside a SQLite file
    (``childshield.db.index/``), else under the data folder, named after the database URL."""
    env = os.environ.get(ENV_INDEX_DIR)
    if env:
        return Path(env)
    url = db.engine.url
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            return None
        return Path(url.database + ".index")
    import hashlib

    key = hashlib.sha256(url.render_as_string(hide_password=True).encode()).hexdigest()[:16]
    return data_dir() / "index" / key


class BankIndex:
    """PDQ items of every entry, with the entry id and bank id of each, searchable through ``mih``."""

    def __init__(
        self,
        mih: PdqMihIndex,
        entry_ids: I64,
        bank_ids: npt.NDArray[np.int32],
        variant: npt.NDArray[np.uint8],
        *,
        instance: str,
        revision: int,
    ) -> None:
        self.mih = mih
        self.instance = instance
        self.revision = revision
        self._entry_ids = [np.asarray(entry_ids, dtype=np.int64)]
        self._bank_ids = [np.asarray(bank_ids, dtype=np.int32)]
        self._variant = [np.asarray(variant, dtype=np.uint8)]
        self._lookup_base()
        self._added_items: dict[int, int] = {}
        self.bank_thresholds: dict[int, int] = {}
        self.variant_thresholds: dict[int, int] = {}
        self.gates: dict[int, int] = {}
        self._gate_thresholds: npt.NDArray[np.int16] | None = None
        self._gate_key: tuple[object, ...] | None = None
        self._gate_items: I64 | None = None
        self._gate_index: PdqMihIndex | None = None

    def _lookup_base(self) -> None:
        ids = self._entry_ids[0]
        if len(ids) < 2 or bool((np.diff(ids) > 0).all()):
            self._sorted_ids, self._sorted_items = ids, None
        else:  # pragma: no cover - entry ids are assigned in increasing order
            order = np.argsort(ids, kind="stable")
            self._sorted_ids, self._sorted_items = ids[order], order

    def __len__(self) -> int:
        return len(self.mih)

    @property
    def entry_ids(self) -> I64:
        return _joined(self._entry_ids)

    @property
    def bank_ids(self) -> npt.NDArray[np.int32]:
        return _joined(self._bank_ids)

    @property
    def variant(self) -> npt.NDArray[np.uint8]:
        """1 for items that are variants (hashes of standard edits of a bank item)."""
        return _joined(self._variant)

    def _items_of(self, entry_ids: I64) -> I64:
        """Item number of each entry id, -1 for entries not in the index."""
        pos = np.searchsorted(self._sorted_ids, entry_ids)
        inside = pos < len(self._sorted_ids)
        found = np.zeros(len(entry_ids), dtype=bool)
        found[inside] = self._sorted_ids[pos[inside]] == entry_ids[inside]
        items = np.where(found, pos if self._sorted_items is None else self._sorted_items[pos * found], -1)
        for k in np.flatnonzero(~found) if self._added_items else ():
            items[k] = self._added_items.get(int(entry_ids[k]), -1)
        return items.astype(np.int64)

    # -- building and catching up ----------------------------------------------------------------
    @classmethod
    def build(cls, db: Database) -> BankIndex:
        """Read every PDQ entry of the database (the slow path: once, then the snapshot is used)."""
        with db.session() as session:
            state = read_state(session)  # first: whatever commits later is caught up next time
            hashes, entry_ids, bank_ids, variant, active = _read_entries(session, None)
        mih = PdqMihIndex(hashes, np.full(len(hashes), -1, dtype=np.int16), alive=active)
        return cls(mih, entry_ids, bank_ids, variant, instance=state.instance, revision=state.revision)

    def catch_up(self, db: Database) -> int:
        """Apply every entry change after this index's revision; returns how many entries changed."""
        with db.session() as session:
            state = read_state(session)
            if state.instance != self.instance or state.reset_revision > self.revision:
                raise StaleSnapshot("the database changed in a way that needs a rebuild")
            if state.revision == self.revision:
                return 0
            hashes, entry_ids, bank_ids, variant, active = _read_entries(session, self.revision)
        items = self._items_of(entry_ids)
        known = np.flatnonzero(items >= 0)
        for flag in (0, 1):
            self.mih.set_alive(items[known[active[known] == flag]], bool(flag))
        new = np.flatnonzero(items < 0)
        if len(new):
            added = self.mih.add(hashes[new], self._thresholds_for(bank_ids[new], variant[new]))
            self.mih.set_alive(np.asarray(added)[active[new] == 0], False)
            self._entry_ids.append(entry_ids[new])
            self._bank_ids.append(bank_ids[new])
            self._variant.append(variant[new])
            self._added_items.update(zip(entry_ids[new].tolist(), added, strict=True))
        self.revision = state.revision
        return len(entry_ids)

    # -- bank settings -----------------------------------------------------------------------------
    def _thresholds_for(
        self, bank_ids: npt.NDArray[np.int32], variant: npt.NDArray[np.uint8]
    ) -> npt.NDArray[np.int16]:
        if not len(bank_ids):
            return np.empty(0, dtype=np.int16)
        known = [*self.bank_thresholds, *self.variant_thresholds]
        top = max(int(bank_ids.max()), max(known, default=0))
        own = np.full(top + 1, -1, dtype=np.int16)
        edits = np.full(top + 1, -1, dtype=np.int16)
        for bank, threshold in self.bank_thresholds.items():
            own[bank] = threshold
        for bank, threshold in self.variant_thresholds.items():
            edits[bank] = threshold
        return np.where(variant > 0, edits[bank_ids], own[bank_ids])

    def apply_banks(
        self,
        thresholds: Mapping[int, int],
        variant_thresholds: Mapping[int, int],
        gates: Mapping[int, int] | None = None,
    ) -> None:
        """PDQ threshold of each enabled bank by id, for items' own hashes and for their variants; items
        of other banks never match (-1).  ``gates``: the looser distance within which items (and their
        variants) of these banks are candidates for the second check (:meth:`search_gate`)."""
        self.bank_thresholds = dict(thresholds)
        self.variant_thresholds = dict(variant_thresholds)
        self.gates = dict(gates or {})
        self.mih.set_thresholds(self._thresholds_for(self.bank_ids, self.variant))
        self._gate_key = None

    def search_gate(self, queries: npt.NDArray[np.uint64]) -> tuple[I64, I64, npt.NDArray[np.int16]]:
        """(query, entry id, distance) of items of gated banks within their gate: all within 63, most of
        those further (see ``PdqMihIndex.search_arrays``: a candidate missed costs recall, never a false
        match, since every candidate is then verified against the database).

        When gated banks hold less than half of the items (media banks beside large imported lists), they
        get tables of their own, so the looser search does not wade through every other bank's items."""
        empty = np.empty(0, np.int64)
        if not self.gates or not len(self):
            return empty, empty, np.empty(0, np.int16)
        key = (len(self), tuple(sorted(self.gates.items())))
        if self._gate_key != key:
            bank_ids = self.bank_ids
            top = max(int(bank_ids.max()), max(self.gates))
            per_bank = np.full(top + 1, -1, dtype=np.int16)
            for bank, gate in self.gates.items():
                per_bank[bank] = gate
            thresholds = per_bank[bank_ids]
            picked = np.flatnonzero(thresholds >= 0)
            self._gate_thresholds = thresholds
            self._gate_items, self._gate_index = None, None
            if len(picked) < len(thresholds) // 2:
                # Every item is alive here: the database check of each candidate drops disabled ones.
                self._gate_items = picked
                self._gate_index = PdqMihIndex(self.mih.all_hashes()[picked], thresholds[picked])
            self._gate_key = key
        if self._gate_index is not None and self._gate_items is not None:
            q, sub, distances = self._gate_index.search_arrays(queries, approximate=True)
            return q.astype(np.int64), self.entry_ids[self._gate_items[sub]], distances
        assert self._gate_thresholds is not None
        q, items, distances = self.mih.search_arrays(queries, self._gate_thresholds, approximate=True)
        return q.astype(np.int64), self.entry_ids[items], distances

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write a snapshot under ``folder`` and point ``folder/current`` at it (atomic for readers)."""
        folder.mkdir(parents=True, exist_ok=True)
        name = f"snap-{self.revision}-{uuid.uuid4().hex[:8]}"
        tmp = folder / f"tmp-{name}"
        self.mih.save(tmp)  # folds added items into the tables: item numbers do not change
        np.save(tmp / "entry_ids.npy", self.entry_ids)
        np.save(tmp / "bank_ids.npy", self.bank_ids)
        np.save(tmp / "variant.npy", self.variant)
        meta = {"format": FORMAT, "instance": self.instance, "revision": self.revision, "items": len(self)}
        (tmp / "meta.json").write_text(json.dumps(meta))
        tmp.rename(folder / name)
        pointer = folder / f".current-{uuid.uuid4().hex[:8]}"
        pointer.write_text(name)
        pointer.replace(folder / "current")
        self._added_items = {}
        self._lookup_base()
        _remove_old(folder, keep=name)
        return folder / name

    @classmethod
    def load(cls, folder: Path) -> BankIndex:
        """Map the current snapshot; raises OSError or ValueError when there is none or it is damaged."""
        name = (folder / "current").read_text().strip()
        if not name.startswith("snap-") or "/" in name:
            raise ValueError(f"{folder}/current does not name a snapshot")
        path = folder / name
        meta = json.loads((path / "meta.json").read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is of another format")
        mih = PdqMihIndex.load(path)
        entry_ids = np.load(path / "entry_ids.npy", mmap_mode="r")
        bank_ids = np.load(path / "bank_ids.npy", mmap_mode="r")
        variant = np.load(path / "variant.npy", mmap_mode="r")
        if any(a.shape != (len(mih),) for a in (entry_ids, bank_ids, variant)):
            raise ValueError(f"{path} does not hold a consistent index")
        return cls(
            mih, entry_ids, bank_ids, variant, instance=str(meta["instance"]), revision=int(meta["revision"])
        )


def _joined(parts: list[ArrayT]) -> ArrayT:
    """The parts as one array, kept joined in ``parts`` (the base array, then blocks added since)."""
    if len(parts) > 1:
        joined: ArrayT = np.concatenate(parts)  # type: ignore[assignment]
        parts[:] = [joined]
    return parts[0]


class StaleSnapshot(Conflict):
    """The snapshot cannot be caught up (another database, or entries were deleted since)."""


def open_bank_index(db: Database, folder: Path | None) -> BankIndex:
    """The snapshot in ``folder`` caught up to the database, else one built from it (and saved)."""
    index: BankIndex | None = None
    if folder is not None and (folder / "current").exists():
        try:
            index = BankIndex.load(folder)
            changed = index.catch_up(db)
        except (OSError, ValueError, KeyError, StaleSnapshot) as exc:
            log.info("rebuilding the PDQ index in %s: %s", folder, exc)
            index = None
        else:
            if changed > SAVE_AFTER:
                _try_save(index, folder)
            return index
    index = BankIndex.build(db)
    if folder is not None:
        _try_save(index, folder)
    return index


def _try_save(index: BankIndex, folder: Path) -> None:
    try:
        index.save(folder)
    except OSError as exc:  # a read-only place costs speed at the next open, nothing else
        log.warning("could not save the PDQ index in %s: %s", folder, exc)


def _remove_old(folder: Path, *, keep: str) -> None:
    """Old snapshots go; so do temporary folders left by a crash an hour ago or more."""
    for path in folder.iterdir():
        stale_tmp = path.name.startswith(("tmp-", ".current-")) and time.time() - path.stat().st_mtime > 3600
        if (path.name.startswith("snap-") and path.name != keep) or stale_tmp:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _read_entries(
    session: Session, after_revision: int | None
) -> tuple[npt.NDArray[np.uint64], I64, npt.NDArray[np.int32], npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """PDQ entries (all states, all banks), in entry id order, optionally only those changed after a
    revision: (hashes, entry ids, bank ids, variant flags, active flags)."""
    # Variants (hashes of edits) match within the variant threshold; a video's frames are its own
    # hashes, so they match within the bank's threshold like any item's.
    is_variant = and_(
        Entry.parent_id.is_not(None), or_(Entry.variant.not_like("frame@%"), Entry.variant.like("%|%"))
    )
    stmt = select(Entry.id, Entry.bank_id, Entry.signal, Entry.state, is_variant, Entry.signal_type)
    # Every row in id order, PDQ kept below: a scan in the table's own order, with no index lookups
    # and no sort (filtering on the signal type here made SQLite sort 10 million rows first).  Catching
    # up reads by revision alone, so the revision index is used.
    if after_revision is not None:
        stmt = stmt.where(Entry.revision > after_revision)
    result = session.execute(stmt.order_by(Entry.id)).yield_per(READ_BATCH)
    hashes: list[npt.NDArray[np.uint64]] = []
    ids: list[I64] = []
    banks: list[npt.NDArray[np.int32]] = []
    variants: list[npt.NDArray[np.uint8]] = []
    active: list[npt.NDArray[np.uint8]] = []
    for part in result.partitions():
        rows = [r[:5] for r in part if SignalType(r[5]) is SignalType.PDQ]
        if not rows:
            continue
        entry_id, bank_id, signal, state, is_variant = zip(*rows, strict=True)
        hashes.append(pack_hex(signal))
        ids.append(np.asarray(entry_id, dtype=np.int64))
        banks.append(np.asarray(bank_id, dtype=np.int32))
        variants.append(np.asarray(is_variant, dtype=np.uint8))
        active.append(np.asarray([EntryState(s) is EntryState.ACTIVE for s in state], dtype=np.uint8))
    if not ids:
        return (
            np.empty((0, 4), dtype=np.uint64),
            np.empty(0, dtype=np.int64),
            np.empty(0, dtype=np.int32),
            np.empty(0, dtype=np.uint8),
            np.empty(0, dtype=np.uint8),
        )
    return (
        np.concatenate(hashes),
        np.concatenate(ids),
        np.concatenate(banks),
        np.concatenate(variants),
        np.concatenate(active),
    )
