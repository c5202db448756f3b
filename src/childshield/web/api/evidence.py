"""Evidence and reports over HTTP, for custodians (and admins): list evidence, place and lift legal
holds, queue reports and follow them.  No media is ever served here: it leaves the vault only in signed
bundles (``childshield vault export``), each export in the chain of custody."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, Field, field_validator
from starlette.concurrency import run_in_threadpool

from childshield.accounts.service import Principal
from childshield.reporting.config import ReportingConfig, load_config
from childshield.reporting.manual import CannotQueue, queue_incident
from childshield.reporting.outbox import listing as listing_reports
from childshield.store.db import Database
from childshield.store.models import Role
from childshield.vault.store import VaultError, hold, listing, release
from childshield.web.api.schemas import ROW_ID_MAX, RowId, printable
from childshield.web.deps import allow, database

router = APIRouter(prefix="/v1", tags=["evidence"])
Db = Annotated[Database, Depends(database)]
Custodian = Annotated[Principal, Depends(allow(Role.CUSTODIAN))]


class HoldIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000, description="A case or order reference")


class ReportIn(BaseModel):
    evidence_ids: list[Annotated[int, Field(ge=1, le=ROW_ID_MAX)]] = Field(min_length=1, max_length=1000)
    destination: str = Field("cybertipline", max_length=100)
    urls: list[str] = Field(default_factory=list, max_length=100)
    user_id: str = Field("", max_length=200)
    incident_time: dt.datetime | None = None
    third_party_hosted: bool | None = None

    @field_validator("destination", "user_id")
    @classmethod
    def _printable(cls, value: str) -> str:
        return printable(value) or ""

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            printable(url)
            if len(url) > 2000 or urlsplit(url).scheme not in ("http", "https"):
                raise ValueError("urls must be http(s) URLs of at most 2000 characters")
        return value


class ReportQueued(BaseModel):
    report_id: int
    files: int


def _reporting(request: Request) -> ReportingConfig:
    config: ReportingConfig | None = getattr(request.app.state, "reporting", None)
    return config if config is not None else load_config()


def _vault_error(exc: VaultError) -> HTTPException:
    gone = "deleted" in str(exc)
    return HTTPException(status.HTTP_409_CONFLICT if gone else status.HTTP_404_NOT_FOUND, str(exc))


@router.get("/evidence")
def evidence_list(who: Custodian, db: Db) -> list[dict[str, Any]]:
    """Every piece of evidence (tombstones too): hashes, classification, retention, hold; no media."""
    return listing(db)


@router.put("/evidence/{evidence_id}/hold", status_code=204)
def evidence_hold(evidence_id: RowId, body: HoldIn, who: Custodian, db: Db) -> None:
    """A legal hold: kept past its retention until the hold is lifted."""
    try:
        hold(db, evidence_id, body.reason, actor=who.name)
    except VaultError as exc:
        raise _vault_error(exc) from None


@router.delete("/evidence/{evidence_id}/hold", status_code=204)
def evidence_release(evidence_id: RowId, who: Custodian, db: Db) -> None:
    try:
        release(db, evidence_id, actor=who.name)
    except VaultError as exc:
        raise _vault_error(exc) from None


@router.post("/reports", response_model=ReportQueued, status_code=201)
async def report_queue(body: ReportIn, request: Request, who: Custodian, db: Db) -> ReportQueued:
    """Queue the report of one incident (the evidence named) to one destination."""
    config = _reporting(request)
    try:
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
            )
        )
    except CannotQueue as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return ReportQueued(report_id=report_id, files=files)


@router.get("/reports")
def report_list(who: Custodian, db: Db) -> list[dict[str, Any]]:
    """Every report: destination, state, the clearinghouse's report id, attempts, last error."""
    return listing_reports(db)
