"""Health, readiness and metrics: for load balancers, orchestrators and Prometheus."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select, text

from childshield.review.queue import counts
from childshield.store.db import Database
from childshield.store.models import WebhookDelivery
from childshield.web.deps import database, metrics, metrics_reader
from childshield.web.metrics import Metrics

router = APIRouter(tags=["system"])


@router.get("/v1/health")
def health() -> dict[str, str]:
    """The process answers (liveness)."""
    return {"status": "ok"}


@router.get("/v1/ready", responses={503: {"description": "not ready"}})
def ready(request: Request, db: Annotated[Database, Depends(database)]) -> dict[str, object]:
    """The database answers and the banks' index is loaded (readiness): route traffic here."""
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"database: {type(exc).__name__}") from None
    holder = request.app.state.matchers
    holder.run(lambda m: None)  # loads the index on first call
    return {"status": "ready", "index_items": holder.run(lambda m: len(m.index))}


@router.get("/metrics", include_in_schema=False)
def prometheus(
    stats: Annotated[Metrics, Depends(metrics)],
    db: Annotated[Database, Depends(database)],
    _: Annotated[None, Depends(metrics_reader)],
) -> Response:
    """Prometheus metrics (an admin's API key, unless ``CHILDSHIELD_METRICS_OPEN``); the queue depths
    (review items, webhook outbox) are read from the database."""
    for state, count in counts(db).items():
        stats.review_queue.labels(state).set(count)
    with db.session() as session:
        hooks = dict(
            session.execute(select(WebhookDelivery.state, func.count()).group_by(WebhookDelivery.state)).all()
        )
    for state in ("pending", "delivered", "dead"):
        stats.webhook_queue.labels(state).set(hooks.get(state, 0))
    return Response(generate_latest(stats.registry), media_type=CONTENT_TYPE_LATEST)
