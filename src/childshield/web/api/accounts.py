"""Accounts over HTTP, for admins: the CLI's ``account`` commands, through the same services (each change
an audit record naming the admin who made it)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from childshield.accounts.service import (
    MIN_PASSWORD,
    NAME,
    AccountInfo,
    accounts,
    api_keys,
    create_api_key,
    create_user,
    revoke_api_key,
    set_password,
    update_account,
)
from childshield.store.db import Database
from childshield.store.models import Role
from childshield.web.api.schemas import Text, problems
from childshield.web.deps import Admin, database

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])
Db = Annotated[Database, Depends(database)]
AccountName = Annotated[
    str, Path(pattern=f"^{NAME.pattern}$", max_length=100, description="The account's name")
]
NOT_FOUND = problems(401, 403, 404, 422, c404="No such account")
Password = Annotated[
    str,
    Field(min_length=MIN_PASSWORD, max_length=1024, description=f"{MIN_PASSWORD} characters or more"),
]
NameField = Annotated[
    str, Field(pattern=f"^{NAME.pattern}$", max_length=100, description="Letters, digits and _.@-")
]


class AccountOut(BaseModel):
    name: str
    role: Role
    disabled: bool
    password: bool = Field(description="Whether it has a password (people do, service accounts never)")
    api_keys: int = Field(description="Unrevoked API keys")
    sessions: int = Field(description="Signed-in browser sessions")
    created_at: dt.datetime


class PersonIn(BaseModel):
    """A person: signs in to the review UI with a password."""

    name: NameField
    role: Literal["admin", "senior", "reviewer", "custodian"]
    password: Password


class ServiceIn(BaseModel):
    """A platform's API client: API keys only, no password."""

    model_config = ConfigDict(extra="forbid")  # a password given for a service is refused, not dropped

    name: NameField
    role: Literal["service"]


AccountIn = Annotated[PersonIn | ServiceIn, Field(discriminator="role")]


class AccountPatch(BaseModel):
    role: Role | None = Field(None, description="Effective on the account's next request")
    disabled: StrictBool | None = Field(
        None, description="A disabled account cannot sign in; its sessions and API keys stop at once"
    )


class PasswordIn(BaseModel):
    password: Password


class KeyIn(BaseModel):
    label: Annotated[str, Text(200)] = Field("", description="What the key is for")


class KeyOut(BaseModel):
    prefix: str
    label: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class NewKeyOut(BaseModel):
    key: str = Field(description="The key itself: shown this once, never again")
    prefix: str
    label: str


def _out(info: AccountInfo) -> AccountOut:
    return AccountOut(
        name=info.name,
        role=info.role,
        disabled=info.disabled,
        password=info.password,
        api_keys=info.api_keys,
        sessions=info.sessions,
        created_at=info.created_at,
    )


def _one(db: Database, name: str) -> AccountOut:
    return _out(accounts(db, name)[0])


@router.get("", response_model=list[AccountOut], responses=problems(401, 403))
def account_list(who: Admin, db: Db) -> list[AccountOut]:
    """Every account by name: role, whether disabled, unrevoked API keys and sessions."""
    return [_out(a) for a in accounts(db)]


@router.post(
    "",
    response_model=AccountOut,
    status_code=201,
    responses=problems(400, 401, 403, 409, 422, c409="An account of that name exists"),
)
def account_create(body: AccountIn, who: Admin, db: Db) -> AccountOut:
    """Create an account: a person with a password, or a service (then give it a key)."""
    password = body.password if isinstance(body, PersonIn) else None
    create_user(db, body.name, Role(body.role), password=password, actor=who.name)
    return _one(db, body.name)


@router.get("/{name}", response_model=AccountOut, responses=NOT_FOUND)
def account_get(name: AccountName, who: Admin, db: Db) -> AccountOut:
    return _one(db, name)


@router.patch(
    "/{name}",
    response_model=AccountOut,
    responses={**NOT_FOUND, **problems(400, 409, c409="It would leave no enabled admin")},
)
def account_change(name: AccountName, body: AccountPatch, who: Admin, db: Db) -> AccountOut:
    """Change the role or disable (enable) the account, at once everywhere.  Disabling ends its
    sessions; becoming a service account removes its password.  The last enabled admin stays one."""
    update_account(db, name, role=body.role, disabled=body.disabled, actor=who.name)
    return _one(db, name)


@router.put(
    "/{name}/password",
    status_code=204,
    responses={**NOT_FOUND, **problems(400, 409, c409="A service account: it has no password")},
)
def account_password(name: AccountName, body: PasswordIn, who: Admin, db: Db) -> None:
    """Set a new password (a reset): every session of the account ends."""
    set_password(db, name, body.password, actor=who.name)


@router.get("/{name}/keys", response_model=list[KeyOut], responses=NOT_FOUND)
def account_keys(name: AccountName, who: Admin, db: Db) -> list[KeyOut]:
    """The account's API keys, revoked ones too, newest first (prefixes and labels, never the keys)."""
    keys = api_keys(db, name)
    return [KeyOut(**{f: getattr(k, f) for f in KeyOut.model_fields}) for k in keys]


@router.post(
    "/{name}/keys", response_model=NewKeyOut, status_code=201, responses={**NOT_FOUND, **problems(400)}
)
def account_key_create(name: AccountName, body: KeyIn, who: Admin, db: Db) -> NewKeyOut:
    """A new API key for the account: the answer is the only time it is shown."""
    key = create_api_key(db, name, label=body.label, actor=who.name)
    return NewKeyOut(key=key, prefix=key.split("_", 2)[1], label=body.label)


@router.delete(
    "/{name}/keys/{prefix}",
    status_code=204,
    responses=problems(401, 403, 404, 422, c404="No such account, or no active key of it by that prefix"),
)
def account_key_revoke(
    name: AccountName,
    prefix: Annotated[str, Path(pattern="^[0-9a-f]{8}$", description="The key's prefix (cs_PREFIX_...)")],
    who: Admin,
    db: Db,
) -> None:
    """Revoke one of the account's keys, at once."""
    revoke_api_key(db, prefix, account=name, actor=who.name)
