"""Accounts and their credentials: the one code path behind the CLI, the API and the web UI.

* Passwords are hashed with argon2id (``argon2-cffi``'s defaults, rehashed when they change).
* API keys are ``cs_<prefix>_<secret>``: 8 characters the key is found by, then 32 random bytes; only the
  key's SHA-256 is stored (a slow hash protects guessable passwords; a 256-bit random key needs none).
* Every change is an audit record, written in the change's own transaction, naming who made it.
* Lifecycle: a disabled account cannot sign in, and its sessions and API keys stop working at once
  (every request reads the account; disabling also ends its sessions); a new password ends the
  account's sessions; a role takes effect on the next request.  The last enabled admin can neither be
  disabled nor lose the role, so the API always has someone who may manage accounts.
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
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from childshield.audit.log import record
from childshield.errors import Conflict, Invalid, NotFound
from childshield.store.db import Database
from childshield.store.models import ApiKey, Role, User, WebSession, utcnow
from childshield.timefmt import aware

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}")
MIN_PASSWORD = 12
_hasher = PasswordHasher()
# Verifying against this when the user does not exist keeps the time of a failed sign-in the same.
_DUMMY = _hasher.hash("not a password of anyone")


class AccountError(Invalid):
    """A clear, user-facing reason an account operation was refused."""


class AccountNotFound(NotFound, AccountError):
    """No account (or no key) by that name."""


class AccountConflict(Conflict, AccountError):
    """Refused by the accounts' current state: the name is taken, or the last admin would be lost."""


PEOPLE = frozenset(Role) - {Role.SERVICE}
"""Roles of people: they sign in with a password; service accounts use API keys only."""


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
        raise AccountConflict(f"an account named {name!r} exists already") from None


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """An account as lists show it (never its password hash or keys)."""

    name: str
    role: Role
    disabled: bool
    password: bool
    """Whether it has a password (people do; service accounts never)."""
    api_keys: int
    """Unrevoked API keys."""
    sessions: int
    """Signed-in browser sessions (live or not yet swept)."""
    created_at: dt.datetime

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "role": self.role.value,
            "disabled": self.disabled,
            "password": self.password,
            "api_keys": self.api_keys,
            "sessions": self.sessions,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class KeyInfo:
    prefix: str
    label: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


def accounts(db: Database, name: str | None = None) -> list[AccountInfo]:
    """Every account by name (or only ``name``: :class:`AccountNotFound` if there is none)."""
    with db.session() as session:
        query = select(User).order_by(User.name)
        if name is not None:
            query = query.where(User.name == name)
        users = session.scalars(query).all()
        if name is not None and not users:
            raise AccountNotFound(f"no account named {name!r}")
        ids = [u.id for u in users]
        keys = dict(
            session.execute(
                select(ApiKey.user_id, func.count())
                .where(ApiKey.user_id.in_(ids), ApiKey.revoked_at.is_(None))
                .group_by(ApiKey.user_id)
            ).all()
        )
        signed_in = dict(
            session.execute(
                select(WebSession.user_id, func.count())
                .where(WebSession.user_id.in_(ids))
                .group_by(WebSession.user_id)
            ).all()
        )
        return [
            AccountInfo(
                u.name,
                u.role,
                u.disabled,
                u.password_hash is not None,
                keys.get(u.id, 0),
                signed_in.get(u.id, 0),
                aware(u.created_at),
            )
            for u in users
        ]


def list_users(db: Database) -> list[dict[str, object]]:
    return [a.as_dict() for a in accounts(db)]


def api_keys(db: Database, name: str) -> list[KeyInfo]:
    """An account's API keys, revoked ones too, newest first (prefixes and labels only)."""
    with db.session() as session:
        user = _user(session, name)
        rows = session.scalars(
            select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.id.desc())
        ).all()
        return [
            KeyInfo(
                k.prefix,
                k.label,
                aware(k.created_at),
                aware(k.last_used_at) if k.last_used_at else None,
                aware(k.revoked_at) if k.revoked_at else None,
            )
            for k in rows
        ]


def set_password(db: Database, name: str, password: str, *, actor: str = "") -> int:
    """A new password; every session of the account ends (returns how many)."""
    hashed = _hash_password(password)
    with db.session() as session:
        user = _user(session, name)
        if user.role is Role.SERVICE:
            raise AccountConflict(f"{name!r} is a service account: it signs in with API keys only")
        user.password_hash = hashed
        ended = _end_sessions(session, user)
        record(session, actor or name, "account.password", f"user:{name}", {"sessions_ended": ended})
        return ended


def set_disabled(db: Database, name: str, disabled: bool, *, actor: str = "") -> bool:
    """Disable (or enable) an account; disabling ends its sessions, and its API keys (and any session
    still in use) are refused from the next request on.  False when it was so already (no record)."""
    return bool(update_account(db, name, disabled=disabled, actor=actor))


def set_role(db: Database, name: str, role: Role, *, actor: str = "") -> bool:
    """Give an account another role (see :func:`update_account`).  False when it had it already."""
    return bool(update_account(db, name, role=role, actor=actor))


def update_account(
    db: Database, name: str, *, role: Role | None = None, disabled: bool | None = None, actor: str = ""
) -> list[str]:
    """Change an account's role and whether it is disabled, in one transaction; returns the audit actions
    written (none when nothing changed).  A role takes effect on the account's next request; becoming a
    service account drops the password and ends the sessions (services use API keys only), and a person
    made of a service account signs in once given a password (:func:`set_password`)."""
    with db.session() as session:
        user = _user(session, name)
        was_admin = _enabled_admin(user)
        done: list[str] = []
        if role is not None and user.role is not role:
            details: dict[str, object] = {"from": user.role.value, "to": role.value}
            user.role = role
            if role is Role.SERVICE:
                details["password_removed"] = user.password_hash is not None
                details["sessions_ended"] = _end_sessions(session, user)
                user.password_hash = None
            record(session, actor or name, "account.role", f"user:{name}", details)
            done.append("account.role")
        if disabled is not None and user.disabled != disabled:
            user.disabled = disabled
            details = {"sessions_ended": _end_sessions(session, user)} if disabled else {}
            action = "account.disable" if disabled else "account.enable"
            record(session, actor or name, action, f"user:{name}", details)
            done.append(action)
        if was_admin and done:
            _keep_an_admin(session, user)
        return done


def _end_sessions(session: Session, user: User) -> int:
    result = session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    return int(getattr(result, "rowcount", 0) or 0)


def _enabled_admin(user: User) -> bool:
    return user.role is Role.ADMIN and not user.disabled


def _keep_an_admin(session: Session, user: User) -> None:
    """Refuse a change of an enabled admin that leaves no enabled admin.  Called after the audit record:
    writing it serialises the writers (docs in audit.log), so this count sees every change committed
    before, and two admins cannot disable each other at once."""
    session.flush()
    enabled_admins = session.scalar(
        select(func.count()).select_from(User).where(User.role == Role.ADMIN, User.disabled.is_(False))
    )
    if enabled_admins == 0:
        raise AccountConflict(
            f"{user.name!r} is the last enabled admin: make another admin first (childshield account add"
            " NAME --role admin)"
        )


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


def revoke_api_key(db: Database, prefix: str, *, account: str | None = None, actor: str = "") -> None:
    """Revoke a key at once (``account``: only if it is that account's)."""
    with db.session() as session:
        owner = [] if account is None else [ApiKey.user_id == _user(session, account).id]
        found = session.execute(
            update(ApiKey)
            .where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None), *owner)
            .values(revoked_at=utcnow())
            .returning(ApiKey.user_id)
        ).all()
        if not found:
            raise AccountNotFound(f"no active API key {prefix!r}")
        owner_name = session.scalar(select(User.name).where(User.id == found[0][0]))
        record(session, actor or "admin", "apikey.revoke", f"apikey:{prefix}", {"account": owner_name})


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


def _user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise AccountNotFound(f"no account named {name!r}")
    return user
