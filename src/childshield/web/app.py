"""The service's application: one process, the API under /v1 (OpenAPI at /openapi.json)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from childshield import __version__
from childshield.actions.webhooks import WebhookConfig, deliver_due
from childshield.store.db import Database, open_database
from childshield.web.api import banks, scan, system
from childshield.web.matcher_holder import MatcherHolder
from childshield.web.metrics import Metrics
from childshield.web.ratelimit import RateLimiter
from childshield.web.settings import ServiceSettings

log = logging.getLogger("childshield.web")

DESCRIPTION = """Find known material by hash: scan media or look up hashes against the banks, and manage
the banks.  Authenticate with an API key: `Authorization: Bearer cs_...` (create one with
`childshield account key NAME`)."""


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    conf = settings or ServiceSettings()

    db = open_database(conf.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sender = None
        if conf.webhook_url:
            config = WebhookConfig(conf.webhook_url, conf.webhook_secret)
            sender = asyncio.create_task(_deliver_forever(db, config, conf.webhook_poll_seconds))
        try:
            yield
        finally:
            if sender is not None:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
            db.close()

    app = FastAPI(
        title="childshield",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.db = db
    app.state.settings = conf
    app.state.metrics = Metrics()
    app.state.matchers = MatcherHolder(db, conf.refresh_seconds)
    app.state.scan_limiter = RateLimiter(conf.scan_rate, conf.scan_burst)
    app.include_router(system.router)
    app.include_router(scan.router)
    app.include_router(banks.router)
    return app


async def _deliver_forever(db: Database, config: WebhookConfig, every: float) -> None:
    """Post due webhook deliveries until cancelled; a failure is logged and retried, never raised."""
    with httpx.Client(follow_redirects=False) as client:
        while True:
            try:
                await run_in_threadpool(deliver_due, db, config, client)
            except Exception:  # the database away for a moment: try again on the next round
                log.exception("webhook delivery round failed")
            await asyncio.sleep(every)


def app_factory() -> FastAPI:
    """For ``uvicorn --factory childshield.web.app:app_factory`` (settings from the environment)."""
    return create_app()
