"""The service's application: one process, the API under /v1 (OpenAPI at /openapi.json)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match

from childshield import __version__
from childshield.actions.webhooks import WebhookConfig, deliver_due
from childshield.errors import ChildshieldError
from childshield.matching.holder import MatcherHolder
from childshield.reporting.config import ReportingConfig, load_config
from childshield.review.keys import Keyring
from childshield.review.media import purge_expired
from childshield.review.queue import ReviewConfig
from childshield.store.db import Database, open_database
from childshield.stream.manager import Watches
from childshield.web.api import accounts, banks, evidence, hotline, scan, system, watches
from childshield.web.bodylimit import BodyLimit
from childshield.web.deps import principal
from childshield.web.metrics import Metrics
from childshield.web.ratelimit import RateLimiter
from childshield.web.settings import ServiceSettings
from childshield.web.ui import pages
from childshield.web.ui.auth import NeedsSignIn, login_url

log = logging.getLogger("childshield.web")

DESCRIPTION = """Find known material by hash: scan media or look up hashes against the banks, and manage
the banks.  Authenticate with an API key: `Authorization: Bearer cs_...` (create one with
`childshield account key NAME`)."""


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    conf = settings or ServiceSettings()

    _quiet_access_log()
    db = open_database(conf.database_url)
    reporting = load_config(conf.reporting_file) if conf.reporting_file else None  # bad file: fail now

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = []
        if conf.webhook_url:
            config = WebhookConfig(conf.webhook_url, conf.webhook_secret)
            tasks.append(asyncio.create_task(_deliver_forever(db, config, conf.webhook_poll_seconds)))
        tasks.append(asyncio.create_task(_purge_forever(app, db, conf.purge_every_seconds)))
        if conf.crawl_worker:
            tasks.append(asyncio.create_task(_crawl_forever(app, conf)))
        if reporting is not None and reporting.auto:
            tasks.append(asyncio.create_task(_report_forever(app, db, reporting, conf.report_every_seconds)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await run_in_threadpool(app.state.watches.close)
            db.close()

    app = FastAPI(
        title="childshield",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # No /docs or /redoc: FastAPI's pages load Swagger UI and ReDoc from a CDN (blank offline, and
        # third-party script on the reviewers' origin).  /openapi.json is the document (docs/api.md).
        docs_url=None,
        redoc_url=None,
    )
    app.state.db = db
    app.state.reporting = reporting
    app.state.settings = conf
    app.state.metrics = Metrics()
    app.state.matchers = MatcherHolder(db, conf.refresh_seconds, hashing=conf.hashing())
    app.state.watches = Watches(db, app.state.matchers, webhook_url=conf.webhook_url)
    app.state.scan_limiter = RateLimiter(conf.scan_rate, conf.scan_burst)
    app.state.login_limiter = RateLimiter(
        conf.login_attempts_per_minute / 60, max(1.0, conf.login_attempts_per_minute)
    )
    key_file = Path(conf.media_key_file) if conf.media_key_file else None
    app.state.keyring = Keyring.load(key_file) if conf.keep_media else None
    app.state.review_config = ReviewConfig(
        classifications=conf.classifications,
        negative_bank=conf.negative_bank,
        webhook_url=conf.webhook_url,
    )
    app.include_router(system.router)
    app.include_router(scan.router)
    app.include_router(banks.router)
    app.include_router(accounts.router)
    app.include_router(hotline.router)
    app.include_router(evidence.router)
    app.include_router(watches.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.add_exception_handler(ChildshieldError, _error)  # type: ignore[arg-type]
    app.add_exception_handler(NeedsSignIn, _to_sign_in)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _problem)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.middleware("http")(_ui_headers)
    app.add_middleware(BodyLimit, paths={"/v1/lookup": conf.max_lookup_bytes}, json_bytes=conf.max_json_bytes)
    return app


async def _to_sign_in(request: Request, exc: NeedsSignIn) -> Response:
    target = login_url(exc.next_path)
    if request.headers.get("hx-request") == "true":  # htmx: go to the page, not swap it into a fragment
        return Response(status_code=401, headers={"HX-Redirect": target})
    if request.method != "GET":
        return Response("sign in first", status_code=401, media_type="text/plain")
    return RedirectResponse(target, status_code=303)


_SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer cs_..."},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the API keys named on every operation that needs one (what
    ``deps.principal`` reads: FastAPI only sees its own security classes)."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title,
            version=app.version,
            openapi_version=app.openapi_version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
            servers=app.servers,
        )
        document.setdefault("components", {})["securitySchemes"] = _SECURITY_SCHEMES
        for route in _routes(app):
            if isinstance(route, APIRoute) and route.include_in_schema and _needs_key(route.dependant):
                for method in route.methods or ():
                    operation = document["paths"][route.path_format][method.lower()]
                    operation["security"] = [{name: []} for name in _SECURITY_SCHEMES]
        app.openapi_schema = document
    return app.openapi_schema


def _routes(app: FastAPI) -> Iterator[BaseRoute]:
    """Every route, those of included routers too (recent FastAPI keeps them inside the router)."""
    for route in app.router.routes:
        nested = getattr(route, "effective_route_contexts", None)
        if callable(nested):
            yield from (context.original_route for context in nested())
        else:
            yield route


def _needs_key(dependant: Dependant) -> bool:
    return any(d.call is principal or _needs_key(d) for d in dependant.dependencies)


def _text(value: object, limit: int = 300) -> str:
    # Whatever a message quotes of the input may hold lone surrogates, which have no UTF-8.
    text = str(value)[:limit]
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


async def _problem(request: Request, exc: HTTPException) -> Response:
    """Every refusal in one shape (``schemas.Problem``); a 405 names every method its path has (Starlette
    names only those of the first route matching the path)."""
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        methods: set[str] = set()
        for route in _routes(request.app):
            match, _ = route.matches(request.scope)
            if match is not Match.NONE:
                methods |= getattr(route, "methods", None) or set()
        headers["Allow"] = ", ".join(sorted(methods))
    return JSONResponse({"detail": _text(exc.detail, 2000)}, exc.status_code, headers=headers)


async def _error(request: Request, exc: ChildshieldError) -> Response:
    """Every error of the tree, answered as its category says (``childshield.errors``): its status and
    headers, and its message as the ``detail``; a fault of this service (the root itself) is logged
    and answered without the message, which may name internals."""
    if not exc.public:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        detail = "internal error: the service's log has the cause"
    else:
        detail = _text(exc, 2000)
    return JSONResponse({"detail": detail}, exc.http_status, headers=exc.headers())


async def _invalid(request: Request, exc: RequestValidationError) -> Response:
    """Invalid input: a 422 in the ``Problem`` shape, saying where and why, without echoing the input
    (FastAPI's own answer quotes it, and fails with a 500 on a NaN or a lone surrogate)."""
    errors = [
        {
            "loc": [part for part in e.get("loc", ()) if isinstance(part, str | int)],
            "msg": _text(e.get("msg", "")).removeprefix("Value error, "),
            "type": _text(e.get("type", ""), 100),
        }
        for e in exc.errors()[:100]
    ]
    said = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:3]]
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return JSONResponse({"detail": "; ".join(said) + more or "invalid request", "errors": errors}, 422)


_API = ("/v1/", "/metrics", "/openapi.json")
_UI_HEADERS = {
    # Scripts only from this site; inline style is allowed because htmx sets style attributes on swaps.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


async def _ui_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    response = await call_next(request)
    if not request.url.path.startswith(_API):
        for name, value in _UI_HEADERS.items():
            response.headers.setdefault(name, value)
    return response


async def _crawl_forever(app: FastAPI, conf: ServiceSettings) -> None:
    """The crawler as a worker of the service: works the frontier as URLs arrive (each worker process
    leases its own URLs, so several can run)."""
    from childshield.crawl.crawler import CrawlConfig, Crawler
    from childshield.crawl.settings import dns_retry
    from childshield.net.guard import AddressPolicy

    holder: MatcherHolder = app.state.matchers
    attempts, backoff = dns_retry()
    config = CrawlConfig(
        policy=AddressPolicy.from_text(conf.fetch_allow),
        timeout=conf.fetch_timeout,
        dns_attempts=attempts,
        dns_backoff=backoff,
    )
    while True:
        try:
            crawler = Crawler(app.state.db, holder.scan, config)
            try:
                await crawler.run(idle_exit=False)
            finally:
                crawler.close()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the crawl worker failed; restarting it in 10 s")
            await asyncio.sleep(10)


async def _purge_forever(app: FastAPI, db: Database, every: float) -> None:
    """Every ``every`` seconds: take confirmed items into the evidence vault (before their kept media
    expires), delete expired kept media and expired evidence (a failure is logged and retried)."""
    from childshield.vault.store import expire, preserve_confirmed

    while True:
        try:
            keyring = app.state.keyring
            if keyring is not None:
                preserved = await run_in_threadpool(preserve_confirmed, db, keyring)
                if preserved:
                    log.info("preserved %d confirmed items as evidence", preserved)
            gone = await run_in_threadpool(purge_expired, db)
            if gone:
                log.info("deleted %d expired kept media", gone)
            await run_in_threadpool(expire, db)
        except Exception:
            log.exception("purging expired media failed")
        await asyncio.sleep(every)


async def _report_forever(app: FastAPI, db: Database, config: ReportingConfig, every: float) -> None:
    """Every ``every`` seconds: queue reports of confirmed evidence by the reporting routes, and send
    what is due to every destination (a failure is logged and retried, never raised)."""
    from childshield.reporting.auto import queue_confirmed
    from childshield.reporting.deliver import deliver_due as deliver_reports
    from childshield.takedown.settings import notice_settings, smtp_settings

    while True:
        try:
            queued = await run_in_threadpool(queue_confirmed, db, config)
            if queued.reports:
                log.info("queued %d reports", len(queued.reports))
            prefix = notice_settings().reference_prefix
            await deliver_reports(db, config, app.state.keyring, smtp_settings(), prefix=prefix)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the reporting round failed; trying again in %s s", every)
        await asyncio.sleep(every)


async def _deliver_forever(db: Database, config: WebhookConfig, every: float) -> None:
    """Post due webhook deliveries until cancelled; a failure is logged and retried, never raised."""
    with httpx.Client(follow_redirects=False) as client:
        while True:
            try:
                await run_in_threadpool(deliver_due, db, config, client)
            except Exception:  # the database away for a moment: try again on the next round
                log.exception("webhook delivery round failed")
            await asyncio.sleep(every)


class _NoQueryStrings(logging.Filter):
    """Access log lines without query strings: a scan's context (an uploader's IP, account, where it was
    posted) travels in them and has no place in web server logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def _quiet_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _NoQueryStrings) for f in access.filters):
        access.addFilter(_NoQueryStrings())


def app_factory() -> FastAPI:
    """For ``uvicorn --factory childshield.web.app:app_factory`` (settings from the environment)."""
    return create_app()


def run(
    *,
    host: str,
    port: int,
    workers: int,
    proxy_headers: bool,
    forwarded_allow_ips: str | None,
    log_level: str,
) -> None:
    """Serve the app with Uvicorn until stopped.  Several workers count metrics in files of this run's own
    (removed at exit), so that a scrape, whichever worker answers it, reports all of them, and nothing of
    an earlier run."""
    import uvicorn

    from childshield.web.multiproc import run_directory

    with run_directory(workers):
        uvicorn.run(
            "childshield.web.app:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            proxy_headers=proxy_headers,
            forwarded_allow_ips=forwarded_allow_ips,
            log_level=log_level,
            server_header=False,
        )
