"""Scan media and look up signals: what a platform calls on every upload."""

from __future__ import annotations

import asyncio
import functools
import math
import time
import uuid
import weakref
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from starlette.concurrency import run_in_threadpool

from childshield.accounts.service import Principal
from childshield.actions.decisions import (
    DecisionNotRecorded,
    PolicySnapshot,
    decide,
    record_decision,
    snapshot,
)
from childshield.banks.formats import normalize_signal
from childshield.matching.holder import MatcherHolder
from childshield.matching.matcher import Matcher
from childshield.matching.scan import ScanResult
from childshield.media.decode import DecodeBusy
from childshield.media.errors import MediaError
from childshield.net.fetch import fetch
from childshield.net.guard import AddressPolicy
from childshield.net.hops import FetchError
from childshield.reporting.context import upload_name
from childshield.review.intake import review_intake
from childshield.review.keys import Keyring
from childshield.store.db import Database
from childshield.web.api.schemas import (
    LookupIn,
    LookupOut,
    LookupResult,
    MatchOut,
    ScanContext,
    ScanOut,
    Signals,
    UrlIn,
    VideoOut,
    problems,
)
from childshield.web.deps import Scanner, charge, database, debit, matchers, metrics, settings
from childshield.web.metrics import Metrics
from childshield.web.ratelimit import retry_after
from childshield.web.settings import ServiceSettings

router = APIRouter(prefix="/v1", tags=["scan"])


async def _body(request: Request, limit: int) -> bytes:
    """The upload: a raw body, or the ``file`` field of a multipart form; refused over ``limit`` bytes."""
    return (await _upload(request, limit))[0]


async def _upload(request: Request, limit: int) -> tuple[bytes, str]:
    """``_body``, with the file name a multipart form gave the upload ('' for a raw body)."""
    name = ""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 1_000_000:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"uploads are limited to {limit} bytes")
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=10, max_part_size=limit)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the form needs a 'file' field")
        data = await upload.read(limit + 1)
        name = upload_name(upload.filename)
    else:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(
                    status.HTTP_413_CONTENT_TOO_LARGE, f"uploads are limited to {limit} bytes"
                )
            chunks.append(chunk)
        data = b"".join(chunks)
    if len(data) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"uploads are limited to {limit} bytes")
    if not data:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "empty upload")
    return data, name


def _scan(
    holder: MatcherHolder, data: bytes, wait: float | None = None
) -> tuple[ScanResult, str, PolicySnapshot | None]:
    """The scan, the decision and the policy in force, all by one matcher."""

    def decided(m: Matcher, result: ScanResult) -> tuple[ScanResult, str, PolicySnapshot | None]:
        return result, decide(result.matches, m), snapshot(m) if result.matches else None

    return holder.scan_then(data, decided, wait=wait)


def _busy(wait: float = 5.0) -> HTTPException:
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "this worker is busy scanning other uploads: try again shortly",
        headers={"Retry-After": retry_after(wait)},
    )


async def _hashed(
    request: Request, holder: MatcherHolder, data: bytes, conf: ServiceSettings
) -> tuple[ScanResult, str, PolicySnapshot | None]:
    """``_scan`` in one of the worker's scan threads (``scan_threads``), waiting for one at most
    ``decode_wait_seconds`` without holding a thread: scans cannot take the threads that health,
    readiness and the other endpoints run in."""
    state = request.app.state
    # A limiter belongs to the event loop it was made in (a worker has one; a test client may run each
    # request in a loop of its own, whose waiters another loop's limiter would never wake).
    by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] | None = getattr(
        state, "scan_slots", None
    )
    if by_loop is None:
        by_loop = state.scan_slots = weakref.WeakKeyDictionary()
    loop = asyncio.get_running_loop()
    slots = by_loop.get(loop)
    if slots is None:
        slots = by_loop[loop] = anyio.CapacityLimiter(conf.scan_threads)
    in_flight = state.metrics.scans_in_flight
    in_flight.inc()
    try:
        start = time.monotonic()
        acquired = False
        with anyio.move_on_after(conf.decode_wait_seconds):
            await slots.acquire()
            acquired = True
        if not acquired:
            raise _busy()
        try:
            left = max(0.0, conf.decode_wait_seconds - (time.monotonic() - start))
            work = functools.partial(_scan, holder, data, left)
            # The slot held is the bound: the thread is not also taken from the pool the other routes share.
            return await anyio.to_thread.run_sync(work, limiter=anyio.CapacityLimiter(1))
        except DecodeBusy as exc:  # its own words: the caller is told why this worker is busy, not how
            raise _busy(exc.retry_after) from None
        finally:
            slots.release()
    finally:
        in_flight.dec()


@router.post(
    "/scan",
    response_model=ScanOut,
    responses=problems(400, 401, 403, 413, 422, 429, 503),
    openapi_extra={
        "requestBody": {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
            },
            "required": True,
        }
    },
)
async def scan(
    request: Request,
    who: Scanner,
    holder: Annotated[MatcherHolder, Depends(matchers)],
    db: Annotated[Database, Depends(database)],
    conf: Annotated[ServiceSettings, Depends(settings)],
    stats: Annotated[Metrics, Depends(metrics)],
    context: Annotated[ScanContext, Query()],
) -> ScanOut:
    """Hash an image (raw bytes, or a multipart form's ``file``) and match it against every bank.

    The media is not kept (unless it matched and its decision queues it for review).  Matches say which
    bank and entry, at which distance, through which variant and which check; ``decision`` is what the
    banks' policies make of them.  The optional query parameters (incident, user_id, screen_name, ip,
    location, file_name, ...: see ``ScanContext``) are kept with a match's decision for the report to a
    clearinghouse; a multipart upload's file name is kept as ``file_name`` unless one is given."""
    start = time.perf_counter()
    data, name = await _upload(request, conf.max_upload_bytes)
    kept = context.stored(file_name=name)
    out = await _scan_and_record(
        data, who, request.app.state.keyring, holder, db, conf, stats, kept, request=request
    )
    stats.latency.labels("scan").observe(time.perf_counter() - start)
    return out


@router.post("/scan/url", response_model=ScanOut, responses=problems(400, 401, 403, 422, 429, 503))
async def scan_url(
    request: Request,
    body: UrlIn,
    who: Scanner,
    holder: Annotated[MatcherHolder, Depends(matchers)],
    db: Annotated[Database, Depends(database)],
    conf: Annotated[ServiceSettings, Depends(settings)],
    stats: Annotated[Metrics, Depends(metrics)],
) -> ScanOut:
    """Fetch an image by URL and scan it.  The address guard refuses private, loopback, link-local and
    metadata addresses (after DNS, on every redirect) unless ``CHILDSHIELD_FETCH_ALLOW`` names them."""
    start = time.perf_counter()
    policy = AddressPolicy.from_text(conf.fetch_allow)
    try:
        fetched = await run_in_threadpool(
            fetch, body.url, policy, max_bytes=conf.max_upload_bytes, timeout=conf.fetch_timeout
        )
    except FetchError:  # counted; answered by the app's handler (422 with its message)
        stats.scans.labels("error").inc()
        raise
    given = body.context or ScanContext.model_validate({})
    context = given.stored(media_url=fetched.url)  # the file's own URL (its name, where it was)
    out = await _scan_and_record(
        fetched.body, who, request.app.state.keyring, holder, db, conf, stats, context, request=request
    )
    out.url = fetched.url
    stats.latency.labels("scan_url").observe(time.perf_counter() - start)
    return out


async def _scan_and_record(
    data: bytes,
    who: Principal,
    keyring: Keyring | None,
    holder: MatcherHolder,
    db: Database,
    conf: ServiceSettings,
    stats: Metrics,
    context: dict[str, str] | None = None,
    *,
    request: Request,
) -> ScanOut:
    charge(request, who, math.ceil(len(data) / conf.work_unit_bytes))  # the bytes, before any decoding
    try:
        result, action, policy = await _hashed(request, holder, data, conf)
    except MediaError:  # counted; answered by the app's handler (422 with its message)
        stats.scans.labels("error").inc()
        raise
    assert result.hashes is not None
    h = result.hashes
    # The pixels decoded, known only now: charged as debt that the caller's next requests wait out.
    debit(request, who, math.ceil(h.width * h.height * max(1, len(h.frames)) / conf.work_unit_pixels))
    content_id = uuid.uuid4().hex
    if policy is not None:  # matched: the decision is recorded (and its webhook queued) before we answer
        intake = review_intake(conf.intake(keyring), data) if action in conf.review_actions else None
        recording = run_in_threadpool(
            lambda: record_decision(
                db,
                content_id=content_id,
                decision=action,
                policy=policy,
                matches=result.matches,
                suppressed=result.suppressed,
                actor=who.name,
                sha256=h.sha256,
                pdq=h.pdq,
                webhook_url=conf.webhook_url,
                then=intake,
                context=context,
                patience=conf.decision_patience_seconds,
            )
        )
        try:
            await recording
        except DecisionNotRecorded:  # more than the error's words: what matched and what to do about it
            stats.scans.labels("error").inc()
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"the content matched (decision {action!r}, content id {content_id}) but the decision "
                "could not be recorded: the database is busy; act on it and scan it again",
                headers={"Retry-After": "10"},
            ) from None
    out = ScanOut(
        content_id=content_id,
        signals=Signals.of(h),
        matched=result.matched,
        matches=[MatchOut.of(x) for x in result.matches],
        suppressed=[MatchOut.of(x) for x in result.suppressed],
        decision=action,  # type: ignore[arg-type]
        url=None,
        video=VideoOut.model_validate(
            {
                "duration": h.duration,
                "frames": h.frame_count,
                "matches": [v.as_dict() for v in result.video],
                "near": [v.as_dict() for v in result.near],
                "note": h.note,
            }
        )
        if h.is_video
        else None,
    )
    stats.scans.labels("matched" if result.matched else "clean").inc()
    for x in result.matches:
        stats.matches.labels(x.bank, x.check or x.signal_type).inc()
    return out


@router.post("/lookup", response_model=LookupOut, responses=problems(400, 401, 403, 413, 422, 429))
def lookup(
    request: Request,
    body: LookupIn,
    who: Scanner,
    holder: Annotated[MatcherHolder, Depends(matchers)],
    conf: Annotated[ServiceSettings, Depends(settings)],
    stats: Annotated[Metrics, Depends(metrics)],
) -> LookupOut:
    """Match signals (no media): one answer per signal, in order, echoing ``id``.  A malformed signal gets
    an ``error`` of its own and does not disturb the others.  Each signal counts against the key's rate
    limit (the body's size is limited before it is parsed: ``CHILDSHIELD_MAX_LOOKUP_BYTES``)."""
    start = time.perf_counter()
    if len(body.signals) > conf.max_lookup:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, f"at most {conf.max_lookup} signals per lookup"
        )
    charge(request, who, len(body.signals) - 1)  # the request itself was counted as it came in
    results: list[LookupResult | None] = [None] * len(body.signals)
    good: list[int] = []
    for k, s in enumerate(body.signals):
        try:
            normalize_signal(s.type, s.value)
            good.append(k)
        except ValueError as exc:
            results[k] = LookupResult(id=s.id, type=s.type, value=s.value[:80], error=str(exc))
    queries = [(body.signals[k].type, body.signals[k].value, body.signals[k].quality) for k in good]
    found = holder.run(lambda m: m.match_many(queries))
    for k, r in zip(good, found, strict=True):
        s = body.signals[k]
        results[k] = LookupResult(
            id=s.id,
            type=s.type.strip().lower(),
            value=s.value,
            matched=r.matched,
            matches=[MatchOut.of(x) for x in r.matches],
            suppressed=[MatchOut.of(x) for x in r.suppressed],
            note=r.note,
        )
    stats.lookups.inc(len(body.signals))
    stats.latency.labels("lookup").observe(time.perf_counter() - start)
    return LookupOut(results=[r for r in results if r is not None])
