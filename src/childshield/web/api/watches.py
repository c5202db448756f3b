"""Live streams watched by the service (admins): start, list, stop.  Alerts are decisions like any
match: recorded with the banks' policy, and their webhooks sent (with the stream id and the stream's
time in ``context``).  Nothing of a stream is kept."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from childshield.audit.log import record
from childshield.net.guard import AddressPolicy
from childshield.stream.manager import Watches
from childshield.stream.sources import service_options
from childshield.web.api.schemas import problems
from childshield.web.deps import Admin

router = APIRouter(prefix="/v1/watches", tags=["streams"])


class WatchIn(BaseModel):
    source: str = Field(
        max_length=2000, description="rtmp://, rtsp://, srt://, http(s):// (HLS), tcp://, udp://"
    )
    stream_id: str | None = Field(
        None, max_length=100, description="Your id of the stream (default: made up)"
    )
    fps: float = Field(1.0, gt=0, le=10, description="Frames hashed per second, besides scene changes")


def _watches(request: Request) -> Watches:
    watches: Watches = request.app.state.watches
    return watches


@router.post("", status_code=201, responses=problems(400, 401, 403, 422))
def start(body: WatchIn, request: Request, who: Admin) -> dict[str, Any]:
    """Start watching a stream."""
    conf = request.app.state.settings
    policy = AddressPolicy.from_text(conf.fetch_allow)
    options = service_options(body.source, policy, allow_local=conf.watch_local)
    base = _watches(request).config
    config = replace(
        base,
        sampling=replace(base.sampling, rate=body.fps),
        options=options,
        guard=policy,  # HLS read by the watch itself: every playlist and segment request guarded
    )
    started = _watches(request).start(body.source, body.stream_id, config)
    with request.app.state.db.session() as session:
        record(session, who.name, "watch.start", f"stream:{started.stream_id}", {"source": body.source[:500]})
    return started.as_dict()


@router.get("", responses=problems(401, 403))
def listing(request: Request, who: Admin) -> list[dict[str, Any]]:
    """Every stream watched since the service started: state, frames, alerts, reconnects, errors."""
    return [s.as_dict() for s in _watches(request).statuses()]


@router.delete("/{stream_id}", responses=problems(401, 403, 404, 422, c404="No such stream"))
def stop(
    stream_id: Annotated[str, PathParam(max_length=100)], request: Request, who: Admin
) -> dict[str, Any]:
    stopped = _watches(request).stop(stream_id)
    with request.app.state.db.session() as session:
        record(session, who.name, "watch.stop", f"stream:{stream_id}", {})
    return stopped.as_dict()
