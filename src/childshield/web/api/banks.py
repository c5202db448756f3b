"""Banks and entries over HTTP: the CLI's ``bank`` commands, through the same services."""

from __future__ import annotations

import io
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from childshield.audit.log import record
from childshield.banks.entries import (
    ImportReport,
    add_outcomes,
    export_rows,
    import_rows,
    set_entry_state,
)
from childshield.banks.formats import ListFormat, Parsed, RowError, SignalRow, normalize_signal, write
from childshield.banks.service import BankInfo, create_bank, get_bank, list_banks, update_bank
from childshield.hashing.result import HashOutcome
from childshield.hashing.service import HashOptions, hash_bytes
from childshield.store.db import Database
from childshield.store.models import BankKind, EntryState
from childshield.web.api.scan import _body
from childshield.web.api.schemas import (
    BankIn,
    BankOut,
    BankPatch,
    EntriesIn,
    EntryStateIn,
    ImportOut,
    RowId,
    problems,
)
from childshield.web.deps import Admin, BankReader, database, settings
from childshield.web.settings import ServiceSettings

router = APIRouter(prefix="/v1/banks", tags=["banks"])
Db = Annotated[Database, Depends(database)]
NOT_FOUND = problems(400, 401, 403, 404, 422, c404="No such bank")


def _out(info: BankInfo) -> BankOut:
    return BankOut(**info.as_dict())


def _audit(db: Database, actor: str, action: str, subject: str, details: dict[str, object]) -> None:
    with db.session() as session:
        record(session, actor, action, subject, details)


@router.get("", response_model=list[BankOut], responses=problems(401, 403))
def banks(who: BankReader, db: Db) -> list[BankOut]:
    """Every bank with its settings and entry counts."""
    return [_out(b) for b in list_banks(db)]


@router.post(
    "",
    response_model=BankOut,
    status_code=201,
    responses=problems(400, 401, 403, 409, 422, c409="The bank exists"),
)
def create(body: BankIn, who: Admin, db: Db) -> BankOut:
    info = create_bank(
        db,
        body.name,
        kind=BankKind(body.kind),
        enabled=body.enabled,
        thresholds=body.thresholds,
        description=body.description,
        policy=body.policy,
    )
    _audit(db, who.name, "bank.create", f"bank:{body.name}", body.model_dump())
    return _out(info)


@router.get("/{name}", response_model=BankOut, responses=NOT_FOUND)
def bank(name: str, who: BankReader, db: Db) -> BankOut:
    return _out(get_bank(db, name))


@router.patch("/{name}", response_model=BankOut, responses=NOT_FOUND)
def change(name: str, body: BankPatch, who: Admin, db: Db) -> BankOut:
    """Change settings; thresholds and policy are merged into the bank's."""
    info = update_bank(
        db,
        name,
        enabled=body.enabled,
        description=body.description,
        thresholds=body.thresholds,
        policy=body.policy,
    )
    _audit(db, who.name, "bank.update", f"bank:{name}", body.model_dump(exclude_none=True))
    return _out(info)


def _report(report: ImportReport) -> ImportOut:
    return ImportOut(
        added=report.added,
        already_present=report.already_present,
        variants=report.variants,
        local_features=report.local_features,
        skipped=[f"{e.line}: {e.message}" if e.line else e.message for e in report.skipped[:100]],
    )


@router.post("/{name}/signals", response_model=ImportOut, responses=NOT_FOUND)
def add_signals(name: str, body: EntriesIn, who: Admin, db: Db) -> ImportOut:
    """Add hashes (an import: atomic, duplicates ignored, malformed ones reported or, strict, refused)."""
    parsed = Parsed()
    for line, s in enumerate(body.signals, start=1):
        try:
            kind, value = normalize_signal(s.type, s.value)
        except ValueError as exc:
            parsed.errors.append(RowError(line, str(exc)))
            continue
        parsed.rows.append(SignalRow(line, kind, value, s.external_id, tuple(s.labels)))
    report = import_rows(db, name, parsed, source_name=body.source_name, strict=body.strict, source="api")
    _audit(db, who.name, "bank.add_signals", f"bank:{name}", {"added": report.added})
    return _report(report)


@router.post("/{name}/media", response_model=ImportOut, responses={**NOT_FOUND, **problems(413)})
async def add_media(
    name: str,
    request: Request,
    who: Admin,
    db: Db,
    conf: Annotated[ServiceSettings, Depends(settings)],
    filename: Annotated[str, Query(max_length=200)] = "upload",
) -> ImportOut:
    """Hash an image (raw bytes or a multipart ``file``) into a bank, as ``bank add`` does: its signals,
    its variants and its local features, never the image."""
    info = get_bank(db, name)
    data = await _body(request, conf.max_upload_bytes)
    options = HashOptions(bank_variants=info.policy.bank_variants, local_features=info.policy.orb_check)
    result = await run_in_threadpool(hash_bytes, data, options)
    report = await run_in_threadpool(add_outcomes, db, name, [HashOutcome(filename, result)])
    _audit(db, who.name, "bank.add_media", f"bank:{name}", {"sha256": result.sha256, "added": report.added})
    return _report(report)


@router.patch(
    "/{name}/entries/{entry_id}",
    status_code=204,
    responses=problems(400, 401, 403, 404, 422, c404="No such bank or entry"),
)
def entry_state(name: str, entry_id: RowId, body: EntryStateIn, who: Admin, db: Db) -> None:
    """Disable, dispute or re-activate an entry (and its variants); effective at once everywhere."""
    set_entry_state(db, name, entry_id, EntryState(body.state), body.reason)
    _audit(db, who.name, f"entry.{body.state}", f"bank:{name}/entry:{entry_id}", {"reason": body.reason})


@router.get(
    "/{name}/export",
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": "The entries: CSV, JSON Lines, or threatexchange's text format",
            "content": {
                t: {"schema": {"type": "string"}} for t in ("text/csv", "application/x-ndjson", "text/plain")
            },
        },
        **problems(401, 403, 404, 422, json_ref=True, c404="No such bank"),
    },
)
def export(
    name: str,
    who: Admin,
    db: Db,
    fmt: Annotated[ListFormat, Query(alias="format")] = ListFormat.JSONL,
) -> PlainTextResponse:
    """Active entries as CSV, JSON Lines or threatexchange's file format (never local features)."""
    rows = export_rows(db, name)
    out = io.StringIO()
    write(rows, out, fmt)
    _audit(db, who.name, "bank.export", f"bank:{name}", {"rows": len(rows), "format": fmt.value})
    media = {ListFormat.CSV: "text/csv", ListFormat.JSONL: "application/x-ndjson"}.get(fmt, "text/plain")
    return PlainTextResponse(out.getvalue(), media_type=media)
