"""Health, readiness and metrics: for load balancers, orchestrators and Prometheus."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import func, select, text

from childshield.matching.holder import MatcherHolder
from childshield.review.queue import counts
from childshield.store.db import Database
from childshield.store.models import WebhookDelivery
from childshield.web.api.schemas import problems
from childshield.web.deps import database, metrics, metrics_reader
from childshield.web.metrics import Metrics

router = APIRouter(tags=["system"])


@router.get("/v1/health")
async def health() -> dict[str, str]:
    """The process answers (liveness).  Async: it needs no thread, so busy scan threads cannot delay it."""
    return {"status": "ok"}


READY_TIMEOUT = 1.0
"""Seconds readiness waits for its checks; past that the worker is reported not ready."""
_probes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="childshield-ready")
"""Readiness checks run here, not in the pool the routes share: scans cannot hold them up."""


def _readiness(db: Database, holder: MatcherHolder) -> int:
    with db.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    return holder.run(lambda m: len(m.index))  # loads the index on first call


_AGAIN = {"Retry-After": "1"}


@router.get("/v1/ready", responses=problems(503, c503="Not ready (the database or the index)"))
async def ready(request: Request) -> dict[str, object]:
    """The database answers and the banks' index is loaded (readiness): route traffic here.  Answers
    within about a second whatever the load: checks still running then mean "not ready" (the first
    call starts loading the index, which goes on in the background)."""
    state = request.app.state  # not through a dependency: sync ones run in the shared thread pool
    db: Database = state.db
    loop = asyncio.get_running_loop()
    probe: asyncio.Future[int] | None = getattr(state, "ready_probe", None)
    if probe is None or probe.done() or probe.get_loop() is not loop:  # one check in flight at a time
        probe = state.ready_probe = loop.run_in_executor(_probes, _readiness, db, state.matchers)
    try:
        items = await asyncio.wait_for(asyncio.shield(probe), READY_TIMEOUT)
    except TimeoutError:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "checks did not answer within 1 s", headers=_AGAIN
        ) from None
    except Exception as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"database: {type(exc).__name__}", headers=_AGAIN
        ) from None
    return {"status": "ready", "index_items": items}


@router.get("/metrics", include_in_schema=False)
def prometheus(
    stats: Annotated[Metrics, Depends(metrics)],
    db: Annotated[Database, Depends(database)],
    _: Annotated[None, Depends(metrics_reader)],
) -> Response:
    """Prometheus metrics (an admin's API key, unless ``CHILDSHIELD_METRICS_OPEN``): every worker's
    counts added up; the queue depths (review items, webhook outbox) are read from the database."""
    with db.session() as session:
        hooks = dict(
            session.execute(select(WebhookDelivery.state, func.count()).group_by(WebhookDelivery.state)).all()
        )
    webhooks = {state: hooks.get(state, 0) for state in ("pending", "delivered", "dead")}
    return Response(stats.exposition(counts(db), webhooks), media_type=CONTENT_TYPE_LATEST)
