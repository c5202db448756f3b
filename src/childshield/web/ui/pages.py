"""The review queue's pages: sign-in, the queue, an item (blurred until revealed), verdicts, breaks."""

from __future__ import annotations

import contextlib
import datetime as dt
import hmac
import secrets
from pathlib import Path
from typing import Annotated, Any

from cryptography.exceptions import InvalidTag
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from childshield.accounts.service import authenticate_password
from childshield.audit.log import record
from childshield.review import queue as review
from childshield.review import wellness
from childshield.review.keys import KeyFileError, Keyring
from childshield.review.media import load
from childshield.review.preview import render
from childshield.store.db import Database
from childshield.store.models import utcnow
from childshield.timefmt import utc
from childshield.web.api.schemas import ROW_ID_MAX, RowId
from childshield.web.deps import database, settings
from childshield.web.ratelimit import RateLimiter, retry_after
from childshield.web.settings import ServiceSettings
from childshield.web.ui import sessions
from childshield.web.ui.auth import COOKIE, LOGIN_COOKIE, Posting, Reviewer, same_origin
from childshield.web.ui.sessions import SignedIn

templates = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")
templates.env.filters["utc"] = utc

# Numbers from the address bar, bounded by what the database stores (beyond: a 422, not a 500)
Done = Annotated[int | None, Query(ge=0, le=ROW_ID_MAX)]
Blur = Annotated[int | None, Query(ge=0, le=1000)]
router = APIRouter(include_in_schema=False)
Db = Annotated[Database, Depends(database)]
Conf = Annotated[ServiceSettings, Depends(settings)]


def _page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def _context(request: Request, who: SignedIn | None, conf: ServiceSettings) -> dict[str, Any]:
    if who is None:
        return {"signed": None, "break_due": None}
    return {"signed": who, "break_due": break_due(request.app.state.db, who, conf)}


def _htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _review_config(request: Request) -> review.ReviewConfig:
    config: review.ReviewConfig = request.app.state.review_config
    return config


# --- sign-in -------------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def home() -> RedirectResponse:
    return RedirectResponse("/review", status.HTTP_303_SEE_OTHER)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, conf: Conf, next: str = "/review") -> HTMLResponse:
    return _login_form(request, conf, next, "")


def _login_form(
    request: Request, conf: ServiceSettings, next_path: str, error: str, code: int = 200
) -> HTMLResponse:
    existing = request.cookies.get(LOGIN_COOKIE, "")
    token = existing if 20 <= len(existing) <= 64 else secrets.token_urlsafe(24)
    response = _page(
        request,
        "login.html",
        {**_context(request, None, conf), "csrf": token, "next": _safe_next(next_path), "error": error},
        code,
    )
    response.set_cookie(
        LOGIN_COOKIE, token, max_age=3600, httponly=True, secure=conf.cookie_secure, samesite="strict"
    )
    return response


def _safe_next(path: str) -> str:
    """Only a path on this site (never ``//host`` or a URL) is a place to go after signing in."""
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/review"


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    db: Db,
    conf: Conf,
    name: Annotated[str, Form(max_length=100)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=500)] = "/review",
) -> Response:
    same_origin(request)
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not csrf or not hmac.compare_digest(cookie.encode(), csrf.encode()):
        return _login_form(request, conf, next, "The form expired: please sign in again.", 403)
    limiter: RateLimiter = request.app.state.login_limiter
    address = request.client.host if request.client else ""
    wait = max(limiter.check(f"name:{name.lower()}"), limiter.check(f"addr:{address}"))
    if wait:
        refused = _login_form(
            request, conf, next, f"Too many sign-in attempts: wait {retry_after(wait)} seconds.", 429
        )
        refused.headers["Retry-After"] = retry_after(wait)
        return refused
    who = await run_in_threadpool(authenticate_password, db, name, password)
    if who is None or not who.can(*review.REVIEWERS):
        await run_in_threadpool(_failed_login, db, name[:100], address)
        return _login_form(request, conf, next, "Wrong name or password.", 401)
    token = await run_in_threadpool(sessions.start, db, who, address=address)
    response = RedirectResponse(_safe_next(next), status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(conf.session_max_hours * 3600),
        httponly=True,
        secure=conf.cookie_secure,
        samesite="strict",
    )
    response.delete_cookie(LOGIN_COOKIE)
    return response


def _failed_login(db: Database, name: str, address: str) -> None:
    with db.session() as session:
        record(session, name or "-", "login.failed", f"user:{name}", {"address": address})


@router.post("/logout")
def logout(who: Posting, db: Db) -> RedirectResponse:
    sessions.end(db, who)
    response = RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE)
    return response


# --- the queue -----------------------------------------------------------------------------------------


@router.get("/review", response_class=HTMLResponse)
def queue_page(request: Request, who: Reviewer, db: Db, conf: Conf, done: Done = None) -> HTMLResponse:
    items = review.queue(db, who.who)
    context = {
        **_context(request, who, conf),
        "items": items,
        "counts": review.counts(db),
        "last": _last(db, who, conf, done),
        "next_item": items[0].id if items else None,
    }
    return _page(request, "queue.html", context)


def _last(db: Database, who: SignedIn, conf: ServiceSettings, done: int | None) -> review.ItemView | None:
    """The item the viewer just gave a verdict on, to say what became of it."""
    if done is None or done <= 0:
        return None
    with contextlib.suppress(review.ReviewError):
        return review.item(db, who.who, done, settled_roles=conf.review_settled_roles, as_participant=True)
    return None


@router.get("/review/items/{item_id}", response_class=HTMLResponse)
def item_page(
    request: Request, item_id: RowId, who: Reviewer, db: Db, conf: Conf, done: Done = None
) -> HTMLResponse:
    item = _item(request, db, who, item_id)
    failed = sessions.take_failed_form(db, who.session_id, item_id)  # shown once: a reload shows it clean
    context = {
        **_context(request, who, conf),
        "item": item,
        "revealed": False,
        "blur": who.blur,
        "classifications": _review_config(request).classifications,
        "error": failed["error"] if failed else "",
        "chosen": failed or {},
        "last": _last(db, who, conf, done),
        "next_item": review.next_item(db, who.who, item_id),
    }
    return _page(request, "item.html", context)


def _item(request: Request, db: Database, who: SignedIn, item_id: int) -> review.ItemView:
    conf: ServiceSettings = request.app.state.settings
    try:
        return review.item(db, who.who, item_id, settled_roles=conf.review_settled_roles)
    except review.ReviewError as exc:  # any refusal reads as absent here: an item's existence is no hint
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


@router.get("/review/items/{item_id}/media")
async def media(
    request: Request, item_id: RowId, who: Reviewer, db: Db, view: str = "blurred", blur: Blur = None
) -> Response:
    """The item's picture as a still JPEG: blurred and gray, or (only after a recorded reveal) as it is."""
    item = _item(request, db, who, item_id)
    reveal = view == "full"
    if reveal and not review.revealed(db, item_id, who.session_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "reveal the media first")
    keyring: Keyring | None = request.app.state.keyring
    if keyring is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this service keeps no media")
    amount = max(sessions.MIN_BLUR, min(sessions.MAX_BLUR, blur if blur is not None else who.blur))
    try:
        media_id = item.media_id
        data = await run_in_threadpool(load, db, keyring, media_id)
        picture = await run_in_threadpool(lambda: render(data, blur=amount, reveal=reveal))
    except KeyFileError as exc:  # sealed with a key this worker has not loaded (rotated since it started)
        fresh = await run_in_threadpool(_reload_keys, request)
        if fresh is None:  # to the reviewer the media is not there (no 422: nothing wrong with the request)
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        data = await run_in_threadpool(load, db, fresh, media_id)
        picture = await run_in_threadpool(lambda: render(data, blur=amount, reveal=reveal))
    except InvalidTag:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the kept media cannot be opened") from None
    # MediaGone (404) and MediaError (422) are answered by the app's handler.
    return Response(picture, media_type="image/jpeg", headers={"Cache-Control": "no-store, private"})


def _reload_keys(request: Request) -> Keyring | None:
    conf: ServiceSettings = request.app.state.settings
    try:
        keyring = Keyring.load(Path(conf.media_key_file) if conf.media_key_file else None, create=False)
    except KeyFileError:
        return None
    request.app.state.keyring = keyring
    return keyring


def _media_panel(request: Request, who: SignedIn, item: review.ItemView, revealed: bool) -> HTMLResponse:
    context = {
        "signed": who,
        "item": item,
        "revealed": revealed,
        "blur": who.blur,
        "nonce": secrets.token_hex(4),
    }
    return _page(request, "_media.html", context)


@router.post("/review/items/{item_id}/reveal", response_class=HTMLResponse)
def reveal(request: Request, item_id: RowId, who: Posting, db: Db) -> Response:
    item = _item(request, db, who, item_id)
    review.record_reveal(db, who.who, item_id, who.session_id)
    if not _htmx(request):
        return RedirectResponse(f"/review/items/{item_id}", status.HTTP_303_SEE_OTHER)
    return _media_panel(request, who, item, True)


@router.post("/review/items/{item_id}/hide", response_class=HTMLResponse)
def hide(request: Request, item_id: RowId, who: Posting, db: Db) -> Response:
    item = _item(request, db, who, item_id)
    if not _htmx(request):
        return RedirectResponse(f"/review/items/{item_id}", status.HTTP_303_SEE_OTHER)
    return _media_panel(request, who, item, False)


@router.post("/review/items/{item_id}/blur", response_class=HTMLResponse)
def set_blur(
    request: Request, item_id: RowId, who: Posting, db: Db, blur: Annotated[int, Form(ge=0, le=1000)]
) -> Response:
    item = _item(request, db, who, item_id)
    amount = sessions.set_blur(db, who.session_id, blur)
    if not _htmx(request):
        return RedirectResponse(f"/review/items/{item_id}", status.HTTP_303_SEE_OTHER)
    updated = SignedIn(who.who, who.session_id, who.csrf, who.reviewed, who.since_break, who.break_at, amount)
    return _media_panel(request, updated, item, False)


@router.post("/review/items/{item_id}/decide", response_class=HTMLResponse)
def decide(
    request: Request,
    item_id: RowId,
    who: Posting,
    db: Db,
    conf: Conf,
    verdict: Annotated[str, Form(max_length=16)] = "",
    classification: Annotated[str, Form(max_length=32)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
    then: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Record a verdict, then (Post/Redirect/Get: a reload never sends it again) go to the queue, or with
    ``then=next`` to the next item.  A verdict that fails goes back to the item's page, which shows why
    with the form as it was filled in."""
    try:
        if not verdict:
            raise review.ReviewError("choose a verdict: confirm, reject or escalate")
        review.decide(
            db,
            who.who,
            item_id,
            verdict,
            classification=classification or None,
            note=note,
            config=_review_config(request),
        )
    except review.ReviewError as exc:
        try:
            _item(request, db, who, item_id)
        except HTTPException:  # settled meanwhile, and not open to this viewer: say why, not "no item"
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        form = {"verdict": verdict, "classification": classification, "note": note}
        sessions.keep_failed_form(db, who.session_id, item_id, str(exc), form)
        return RedirectResponse(f"/review/items/{item_id}", status.HTTP_303_SEE_OTHER)
    sessions.count_review(db, who.session_id)
    following = review.next_item(db, who.who, item_id) if then == "next" else None
    if following is not None:
        return RedirectResponse(f"/review/items/{following}?done={item_id}", status.HTTP_303_SEE_OTHER)
    return RedirectResponse(f"/review?done={item_id}", status.HTTP_303_SEE_OTHER)


@router.post("/review/break")
def took_break(who: Posting, db: Db) -> RedirectResponse:
    sessions.take_break(db, who.session_id)
    return RedirectResponse("/review", status.HTTP_303_SEE_OTHER)


def break_due(
    db: Database, who: SignedIn, conf: ServiceSettings, now: dt.datetime | None = None
) -> wellness.BreakDue | None:
    return wellness.break_due(
        db,
        conf.break_rules(),
        user_id=who.who.user_id,
        since_break=who.since_break,
        break_at=who.break_at,
        now=now or utcnow(),
    )
