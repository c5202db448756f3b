"""Accounts and their credentials: the one code path behind the CLI, the API and the web UI.

* Passwords are hashed with argon2id (``argon2-cffi``'s defaults, rehashed when they change).
* API keys are ``cs_<prefix>_<secret>``: 8 characters the key is found by, then 32 random bytes; only the
  key's SHA-256 is stored (a slow hash protects guessable passwords; a 256-bit random key needs none).
* Every change is an audit record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from childshield.audit.log import record
from childshield.store.db import Database
from childshield.store.models import ApiKey, Role, User, utcnow
from childshield.timefmt import aware

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}")
MIN_PASSWORD = 12
_hasher = PasswordHasher()
# Verifying against this when the user does not exist keeps the time of a failed sign-in the same.
_DUMMY = _hasher.hash("not a password of anyone")


class AccountError(Exception):
    """A clear, user-facing reason an account operation was refused."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting: an account and its role (and the API key used, if any)."""

    user_id: int
    name: str
    role: Role
    key_prefix: str | None = None

    def can(self, *roles: Role) -> bool:
        return self.role is Role.ADMIN or self.role in roles


def create_user(db: Database, name: str, role: Role, *, password: str | None = None, actor: str = "") -> int:
    if not NAME.fullmatch(name):
        raise AccountError(f"invalid account name {name[:40]!r}: letters, digits and _.@- only")
    if role is not Role.SERVICE and password is None:
        raise AccountError("people sign in with a password: give one (service accounts use API keys)")
    hashed = _hash_password(password) if password is not None else None
    try:
        with db.session() as session:
            user = User(name=name, role=role, password_hash=hashed)
            session.add(user)
            session.flush()
            record(session, actor or name, "account.create", f"user:{name}", {"role": role.value})
            return user.id
    except IntegrityError:
        raise AccountError(f"an account named {name!r} exists already") from None


def list_users(db: Database) -> list[dict[str, object]]:
    with db.session() as session:
        users = session.scalars(select(User).order_by(User.name)).all()
        keys = session.execute(select(ApiKey.user_id, ApiKey.revoked_at)).all()
    active: dict[int, int] = {}
    for user_id, revoked in keys:
        if revoked is None:
            active[user_id] = active.get(user_id, 0) + 1
    return [
        {
            "name": u.name,
            "role": u.role.value,
            "disabled": u.disabled,
            "password": u.password_hash is not None,
            "api_keys": active.get(u.id, 0),
            "created_at": u.created_at.isoformat(),
        }
        for u in users
    ]


def set_password(db: Database, name: str, password: str, *, actor: str = "") -> None:
    hashed = _hash_password(password)
    with db.session() as session:
        user = _user(session, name)
        user.password_hash = hashed
        record(session, actor or name, "account.password", f"user:{name}")


def set_disabled(db: Database, name: str, disabled: bool, *, actor: str = "") -> None:
    with db.session() as session:
        _user(session, name).disabled = disabled
        record(session, actor or name, "account.disable" if disabled else "account.enable", f"user:{name}")


def authenticate_password(db: Database, name: str, password: str) -> Principal | None:
    """The account if the password is right and the account enabled; None otherwise (same time)."""
    with db.session() as session:
        user = session.scalar(select(User).where(User.name == name))
        stored = user.password_hash if user is not None and user.password_hash else _DUMMY
        try:
            _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if user is None or user.password_hash is None or user.disabled:
            return None
        if _hasher.check_needs_rehash(stored):
            user.password_hash = _hasher.hash(password)
        return Principal(user.id, user.name, user.role)


def create_api_key(db: Database, name: str, *, label: str = "", actor: str = "") -> str:
    """A new key for an account; the only time it is ever shown."""
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    key = f"cs_{prefix}_{secret}"
    with db.session() as session:
        user = _user(session, name)
        session.add(ApiKey(user_id=user.id, prefix=prefix, key_hash=_key_hash(key), label=label))
        record(session, actor or name, "apikey.create", f"user:{name}", {"prefix": prefix, "label": label})
    return key


def revoke_api_key(db: Database, prefix: str, *, actor: str = "") -> None:
    with db.session() as session:
        found = session.execute(
            update(ApiKey)
            .where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .returning(ApiKey.user_id)
        ).all()
        if not found:
            raise AccountError(f"no active API key {prefix!r}")
        record(session, actor or "admin", "apikey.revoke", f"apikey:{prefix}")


def authenticate_key(
    db: Database, key: str, *, touch_every: dt.timedelta = dt.timedelta(minutes=5)
) -> Principal | None:
    """The account of a valid, unrevoked key of an enabled account; None otherwise."""
    parts = key.split("_", 2)  # the secret part may hold "_" itself
    if len(parts) != 3 or parts[0] != "cs" or len(parts[1]) != 8 or len(key) > 200:
        return None
    with db.session() as session:
        row = session.execute(
            select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(ApiKey.prefix == parts[1])
        ).first()
        if row is None:
            return None
        api_key, user = row
        if not hmac.compare_digest(api_key.key_hash, _key_hash(key)):
            return None
        if api_key.revoked_at is not None or user.disabled:
            return None
        now = utcnow()
        last = api_key.last_used_at
        if last is None or now - aware(last) > touch_every:
            api_key.last_used_at = now  # coarse, so a busy key does not write on every request
        return Principal(user.id, user.name, user.role, api_key.prefix)


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"passwords need at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def _user(session: object, name: str) -> User:
    from sqlalchemy.orm import Session

    assert isinstance(session, Session)
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise AccountError(f"no account named {name!r}")
    return user
