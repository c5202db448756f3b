"""Evidence and reports over HTTP, for custodians (and admins): list evidence, place and lift legal
holds, queue reports and follow them.  No media is ever served here: it leaves the vault only in signed
bundles (``childshield vault export``), each export in the chain of custody."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, StrictBool
from starlette.concurrency import run_in_threadpool

from childshield.accounts.service import Principal
from childshield.reporting.config import ReportingConfig, load_config
from childshield.reporting.cybertip import INCIDENT_TYPES
from childshield.reporting.manual import queue_incident
from childshield.reporting.outbox import listing as listing_reports
from childshield.store.db import Database
from childshield.store.models import Role
from childshield.vault.store import hold, listing, release
from childshield.web.api.schemas import ROW_ID_MAX, Integer, RowId, ScanContext, Text, problems
from childshield.web.deps import allow, database

router = APIRouter(prefix="/v1", tags=["evidence"])
Db = Annotated[Database, Depends(database)]
Custodian = Annotated[Principal, Depends(allow(Role.CUSTODIAN))]


class HoldIn(BaseModel):
    reason: Annotated[str, Text(2000, blank=False)] = Field(description="A case or order reference")


class ReportIn(BaseModel):
    evidence_ids: list[Annotated[Integer, Field(ge=1, le=ROW_ID_MAX)]] = Field(min_length=1, max_length=1000)
    destination: Annotated[str, Text(100)] = "cybertipline"
    urls: list[Annotated[str, Text(2000, url=True)]] = Field(default_factory=list, max_length=100)
    user_id: Annotated[str, Text(200)] = ""
    incident_time: dt.datetime | None = None
    third_party_hosted: StrictBool | None = None
    incident_type: Literal[INCIDENT_TYPES] | None = Field(  # type: ignore[valid-type]
        None, description="NCMEC's incident type (default: known material's)"
    )
    context: ScanContext | None = Field(
        None,
        description="More about the incident in a scan context's words (annotations, escalate, what was "
        "done to the account, ...), over what the evidence's own contexts say",
    )


class ReportQueued(BaseModel):
    report_id: int
    files: int


def _reporting(request: Request) -> ReportingConfig:
    config: ReportingConfig | None = getattr(request.app.state, "reporting", None)
    return config if config is not None else load_config()


@router.get("/evidence", responses=problems(401, 403))
def evidence_list(who: Custodian, db: Db) -> list[dict[str, Any]]:
    """Every piece of evidence (tombstones too): hashes, classification, retention, hold; no media."""
    return listing(db)


@router.put(
    "/evidence/{evidence_id}/hold",
    status_code=204,
    responses=problems(400, 401, 403, 404, 409, 422, c409="Deleted"),
)
def evidence_hold(evidence_id: RowId, body: HoldIn, who: Custodian, db: Db) -> None:
    """A legal hold: kept past its retention until the hold is lifted."""
    hold(db, evidence_id, body.reason, actor=who.name)


@router.delete(
    "/evidence/{evidence_id}/hold",
    status_code=204,
    responses=problems(401, 403, 404, 409, 422, c409="Deleted"),
)
def evidence_release(evidence_id: RowId, who: Custodian, db: Db) -> None:
    release(db, evidence_id, actor=who.name)


@router.post("/reports", response_model=ReportQueued, status_code=201, responses=problems(400, 401, 403, 422))
async def report_queue(body: ReportIn, request: Request, who: Custodian, db: Db) -> ReportQueued:
    """Queue the report of one incident (the evidence named) to one destination."""
    config = _reporting(request)
    report_id, files = await run_in_threadpool(
        lambda: queue_incident(
            db,
            config,
            body.evidence_ids,
            destination=body.destination,
            actor=who.name,
            urls=body.urls,
            user_id=body.user_id,
            at=body.incident_time,
            third_party_hosted=body.third_party_hosted,
            context={
                **((body.context.stored() or {}) if body.context else {}),
                **({"incident_type": body.incident_type} if body.incident_type else {}),
            },
        )
    )
    return ReportQueued(report_id=report_id, files=files)


@router.get("/reports", responses=problems(401, 403))
def report_list(who: Custodian, db: Db) -> list[dict[str, Any]]:
    """Every report: destination, state, the clearinghouse's report id, attempts, last error."""
    return listing_reports(db)
