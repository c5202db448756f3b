"""Bank operations: the one code path behind the CLI, the API and library calls."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from childshield.banks.errors import BankExists, BankNotFound, InvalidBankSetting
from childshield.banks.policy import Policy, validate_policy
from childshield.store.db import Database
from childshield.store.models import DEFAULT_THRESHOLDS, Bank, BankKind, Entry, EntryState, SignalType
from childshield.store.revision import bump
from childshield.timefmt import aware

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
# Cryptographic digests match exactly or not at all; PDQ distances run 0..256.
THRESHOLD_RANGES = {
    SignalType.PDQ: (0, 256),
    SignalType.MD5: (0, 0),
    SignalType.SHA1: (0, 0),
    SignalType.SHA256: (0, 0),
}


@dataclass(frozen=True, slots=True)
class BankInfo:
    id: int
    name: str
    kind: BankKind
    enabled: bool
    thresholds: Mapping[str, int]
    description: str
    created_at: dt.datetime
    updated_at: dt.datetime
    entries: Mapping[str, int]
    """Entry counts by state (active, disputed, disabled); variants are counted apart."""
    policy: Policy
    variants: int = 0
    """Variant entries (hashes of standard edits of items added from media)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "enabled": self.enabled,
            "thresholds": dict(self.thresholds),
            "policy": self.policy.as_dict(),
            "variants": self.variants,
            "description": self.description,
            "entries": dict(self.entries),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def validate_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidBankSetting(
            f"invalid bank name {name[:120]!r}: 1-100 letters, digits, '_', '.' or '-',"
            " starting with a letter or digit"
        )
    return name


def validate_thresholds(thresholds: Mapping[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in thresholds.items():
        try:
            signal = SignalType(key)
        except ValueError:
            known = ", ".join(s.value for s in SignalType)
            raise InvalidBankSetting(f"unknown signal type {key!r} (known: {known})") from None
        low, high = THRESHOLD_RANGES[signal]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidBankSetting(
                f"{signal.value} threshold must be an integer from {low} to {high}, got {value!r}"
            )
        out[signal.value] = value
    return out


def _info(session: Session, bank: Bank) -> BankInfo:
    counts = {state.value: 0 for state in EntryState}
    # An item's own signals: no parent, or a digest (a video's MD5 and SHA-1 point to its SHA-256).
    own_signal = or_(Entry.parent_id.is_(None), Entry.signal_type != SignalType.PDQ)
    rows = session.execute(
        select(Entry.state, own_signal, func.count())
        .where(Entry.bank_id == bank.id)
        .group_by(Entry.state, own_signal)
    ).all()
    variants = 0
    for state, own, count in rows:
        if own:
            counts[EntryState(state).value] = count
        else:
            variants += count
    created = aware(bank.created_at)
    updated = aware(bank.updated_at)
    return BankInfo(
        bank.id,
        bank.name,
        BankKind(bank.kind),
        bank.enabled,
        dict(bank.thresholds),
        bank.description,
        created,
        updated,
        counts,
        Policy.of(bank.policy),
        variants,
    )


def find_bank_row(session: Session, name: str) -> Bank:
    bank = session.scalar(select(Bank).where(Bank.name == name))
    if bank is None:
        raise BankNotFound(f"no bank named {name[:120]!r}")
    return bank


def create_bank(
    db: Database,
    name: str,
    *,
    kind: BankKind = BankKind.NORMAL,
    enabled: bool = True,
    thresholds: Mapping[str, Any] | None = None,
    description: str = "",
    policy: Mapping[str, Any] | None = None,
) -> BankInfo:
    validate_name(name)
    merged = {**DEFAULT_THRESHOLDS, **validate_thresholds(thresholds or {})}
    rules = validate_policy(policy or {})
    try:
        with db.session() as session:
            bank = Bank(
                name=name,
                kind=kind,
                enabled=enabled,
                thresholds=merged,
                description=description,
                policy=rules,
            )
            session.add(bank)
            bump(session)
            session.flush()
            return _info(session, bank)
    except IntegrityError:
        raise BankExists(f"a bank named {name!r} already exists") from None


def get_bank(db: Database, name: str) -> BankInfo:
    with db.session() as session:
        return _info(session, find_bank_row(session, name))


def list_banks(db: Database) -> list[BankInfo]:
    with db.session() as session:
        return [_info(session, bank) for bank in session.scalars(select(Bank).order_by(Bank.name))]


def rename_bank(db: Database, old: str, new: str) -> BankInfo:
    validate_name(new)
    try:
        with db.session() as session:
            bank = find_bank_row(session, old)
            bank.name = new
            bump(session)
            session.flush()
            return _info(session, bank)
    except IntegrityError:
        raise BankExists(f"a bank named {new!r} already exists") from None


def update_bank(
    db: Database,
    name: str,
    *,
    enabled: bool | None = None,
    kind: BankKind | None = None,
    thresholds: Mapping[str, Any] | None = None,
    description: str | None = None,
    policy: Mapping[str, Any] | None = None,
) -> BankInfo:
    """Change settings; thresholds and policy are merged into the existing ones."""
    checked = validate_thresholds(thresholds or {})
    rules = validate_policy(policy or {})
    with db.session() as session:
        bank = find_bank_row(session, name)
        if enabled is not None:
            bank.enabled = enabled
        if kind is not None:
            bank.kind = kind
        if checked:
            bank.thresholds = {**bank.thresholds, **checked}
        if description is not None:
            bank.description = description
        if rules:
            bank.policy = {**(bank.policy or {}), **rules}
        bump(session)
        session.flush()
        return _info(session, bank)


def delete_bank(db: Database, name: str) -> int:
    """Delete a bank and its entries; returns how many entries went with it."""
    with db.session() as session:
        bank = find_bank_row(session, name)
        count = session.scalar(select(func.count()).select_from(Entry).where(Entry.bank_id == bank.id)) or 0
        session.delete(bank)
        bump(session, reset=True)  # entries go: persisted indexes rebuild rather than catch up
        return count
