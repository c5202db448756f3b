"""Request dependencies: the database, the matcher, and who is calling (with the roles they need)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from childshield.accounts.service import Principal, authenticate_key
from childshield.matching.holder import MatcherHolder
from childshield.store.db import Database
from childshield.store.models import Role
from childshield.web.metrics import Metrics
from childshield.web.ratelimit import RateLimiter, retry_after
from childshield.web.settings import ServiceSettings


def database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def matchers(request: Request) -> MatcherHolder:
    holder: MatcherHolder = request.app.state.matchers
    return holder


def metrics(request: Request) -> Metrics:
    m: Metrics = request.app.state.metrics
    return m


def settings(request: Request) -> ServiceSettings:
    s: ServiceSettings = request.app.state.settings
    return s


def principal(request: Request, db: Annotated[Database, Depends(database)]) -> Principal:
    """The caller, by API key (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``)."""
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header[:7].lower() == "bearer " else request.headers.get("x-api-key", "")
    if not key:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "an API key is needed", headers={"WWW-Authenticate": "Bearer"}
        )
    who = authenticate_key(db, key)
    if who is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return who


def allow(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency passing callers with one of ``roles`` (admins always)."""

    def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if not who.can(*roles):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"the {who.role.value} role may not do this")
        return who

    return check


def metrics_reader(request: Request, db: Annotated[Database, Depends(database)]) -> None:
    """``/metrics``: open to all with ``metrics_open``, else to admins' API keys."""
    if not settings(request).metrics_open:
        allow()(principal(request, db))


def charge(request: Request, who: Principal, cost: float) -> None:
    """Count ``cost`` units of work against the caller's allowance; 429 when it has not that much left.

    Every scan and lookup costs 1 as it arrives (``Scanner``); the routes charge the rest as they learn
    it: a lookup's signals, a scan's bytes (see ``ServiceSettings.scan_rate``)."""
    limiter: RateLimiter = request.app.state.scan_limiter
    wait = limiter.check(who.key_prefix or who.name, cost)
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many requests for this API key: slow down",
            headers={"Retry-After": retry_after(wait)},
        )


def debit(request: Request, who: Principal, cost: float) -> None:
    """Count work already done (a scan's decoded pixels): the caller's next requests wait for it."""
    limiter: RateLimiter = request.app.state.scan_limiter
    limiter.debit(who.key_prefix or who.name, cost)


def _limited_scanner(request: Request, who: Annotated[Principal, Depends(allow(Role.SERVICE))]) -> Principal:
    charge(request, who, 1)
    return who


Scanner = Annotated[Principal, Depends(_limited_scanner)]
"""Scans and lookups: service clients (and admins)."""
BankReader = Annotated[Principal, Depends(allow(Role.SERVICE, Role.SENIOR))]
Admin = Annotated[Principal, Depends(allow())]
