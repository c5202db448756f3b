"""Who is signed in, and CSRF: the web UI's request dependencies."""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, HTTPException, Request, status

from childshield.errors import ChildshieldError
from childshield.store.db import Database
from childshield.web.deps import database, settings
from childshield.web.settings import ServiceSettings
from childshield.web.ui.sessions import SignedIn, lookup

COOKIE = "cs_session"
LOGIN_COOKIE = "cs_login"
"""The sign-in form's double-submit CSRF token (there is no session yet to hold one)."""


class NeedsSignIn(ChildshieldError):
    """No live session: pages redirect to the sign-in page, htmx requests are told to go there."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


def signed_in(
    request: Request,
    db: Annotated[Database, Depends(database)],
    conf: Annotated[ServiceSettings, Depends(settings)],
) -> SignedIn:
    found = lookup(
        db,
        request.cookies.get(COOKIE, ""),
        idle=dt.timedelta(minutes=conf.session_idle_minutes),
        lifetime=dt.timedelta(hours=conf.session_max_hours),
    )
    if found is None:
        raise NeedsSignIn(request.url.path)
    return found


def login_url(next_path: str) -> str:
    return "/login" + (f"?next={quote(next_path, safe='/')}" if next_path not in ("", "/", "/login") else "")


def same_origin(request: Request) -> None:
    """Refuse a state-changing request sent from another site (browsers send Origin on POSTs)."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = urlsplit(origin).netloc
        if host != request.headers.get("host", ""):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site request refused")
    elif origin == "null":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site request refused")


async def csrf_checked(request: Request, who: Annotated[SignedIn, Depends(signed_in)]) -> SignedIn:
    """A signed-in POST carrying the session's CSRF token (form field ``csrf`` or ``X-CSRF-Token``)."""
    same_origin(request)
    token = request.headers.get("x-csrf-token", "")
    if not token:
        form = await request.form()
        value = form.get("csrf")
        token = value if isinstance(value, str) else ""
    if not token or not hmac.compare_digest(token.encode(), who.csrf.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the form has expired: reload the page and try again")
    return who


Reviewer = Annotated[SignedIn, Depends(signed_in)]
Posting = Annotated[SignedIn, Depends(csrf_checked)]
