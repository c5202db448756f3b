"""Request and response bodies of the API (published in /openapi.json)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import Path as PathParam
from pydantic import BaseModel, Field, field_validator

from childshield.hashing.result import HashResult
from childshield.matching.matcher import Match


def printable(value: str | None) -> str | None:
    """Text that goes into reports and XML: control characters are refused (a 422 saying so)."""
    if value is not None and any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
        raise ValueError("control characters are not allowed")
    return value


ROW_ID_MAX = 2**63 - 1
RowId = Annotated[int, PathParam(ge=1, le=ROW_ID_MAX, description="A row id")]
"""A row id in a path (bounded by what the databases can store)."""


class MatchOut(BaseModel):
    bank: str
    entry_id: int
    item_id: int
    signal_type: str
    distance: int
    check: str = Field(description="What decided the match: the signal type, or 'orb' (second check)")
    inliers: int | None = None
    variant: str | None = Field(None, description="The stored variant that matched (crop, rotation)")
    query_variant: str | None = Field(None, description="The query's variant that matched (flipx, trimmed)")
    external_id: str | None = None
    source: str
    source_name: str

    @classmethod
    def of(cls, m: Match) -> MatchOut:
        return cls(
            bank=m.bank,
            entry_id=m.entry_id,
            item_id=m.item_id,
            signal_type=m.signal_type,
            distance=m.distance,
            check=m.check or m.signal_type,
            inliers=m.inliers if m.check == "orb" else None,
            variant=m.variant or None,
            query_variant=m.query_variant or None,
            external_id=m.external_id,
            source=m.source,
            source_name=m.source_name,
        )


class Signals(BaseModel):
    md5: str
    sha1: str
    sha256: str
    pdq: str | None
    pdq_quality: int
    format: str
    width: int
    height: int
    size_bytes: int

    @classmethod
    def of(cls, h: HashResult) -> Signals:
        fields = ("md5", "sha1", "sha256", "pdq", "pdq_quality", "format", "width", "height", "size_bytes")
        return cls(**{name: getattr(h, name) for name in fields})


Decision = Literal["allow", "review", "quarantine", "block"]


class FrameHitOut(BaseModel):
    time: float = Field(description="Seconds into the scanned video")
    item_time: float | None = Field(description="Seconds into the banked video (None: a banked image)")
    distance: int


class VideoMatchOut(BaseModel):
    bank: str
    item_id: int
    kind: Literal["video", "image", "file"] = Field(
        description="video: frames of a banked video; image: a banked image in a frame; file: the same file"
    )
    query_share: float | None = Field(description="Percent of this video's unique frames matching the item")
    item_share: float | None = Field(description="Percent of the banked video's unique frames matched")
    first_time: float | None = Field(description="Seconds into this video of the first matching frame")
    hits: list[FrameHitOut]


class VideoOut(BaseModel):
    duration: float | None
    frames: int = Field(description="Frames hashed (sampled, low-quality and repeated ones dropped)")
    matches: list[VideoMatchOut] = Field(description="For each match: what matched, and when")
    near: list[VideoMatchOut] = Field(description="Banked videos sharing frames below both shares")
    note: str = ""


class ScanOut(BaseModel):
    content_id: str = Field(description="Refer to this scan in follow-up calls")
    signals: Signals
    matched: bool
    matches: list[MatchOut]
    suppressed: list[MatchOut] = Field(description="Matches cleared by a negative bank (allow-list)")
    decision: Decision = Field(description="The strongest action of the banks matched ('allow' if none)")
    url: str | None = Field(None, description="For /v1/scan/url: the URL fetched, after redirects")
    video: VideoOut | None = Field(None, description="For videos: frame times of the matches")


class ScanContext(BaseModel):
    """Who and where, for a report to a clearinghouse if the content is confirmed (all optional; kept
    with the decision, and only when the content matched)."""

    incident: str | None = Field(
        None, max_length=200, description="Your key of the incident: files with the same key go in one report"
    )
    user_id: str | None = Field(
        None, max_length=200, description="The uploading account's id on your platform"
    )
    screen_name: str | None = Field(None, max_length=200, description="...and its screen name")
    ip: str | None = Field(None, max_length=64, description="The uploader's IP address")
    location: str | None = Field(
        None, max_length=2000, description="The http(s) URL where the content was (or would have been) posted"
    )

    @field_validator("incident", "user_id", "screen_name", "location")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        return printable(value)

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_address(value)  # ValueError: a 422 saying so
        return value

    @field_validator("location")
    @classmethod
    def _location(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("location must be an http(s) URL")
        return value

    def stored(self) -> dict[str, str] | None:
        values = {k: v for k, v in self.model_dump().items() if v}
        return values or None


class UrlIn(BaseModel):
    url: str = Field(max_length=2000, description="http(s) URL of an image; private addresses are refused")
    context: ScanContext | None = None


class SignalIn(BaseModel):
    type: str = Field(description="pdq, md5, sha1 or sha256", examples=["pdq"])
    value: str = Field(max_length=256)
    quality: int | None = Field(None, ge=0, le=100)
    id: str | None = Field(None, max_length=200, description="Echoed back, to pair answers with questions")


class LookupIn(BaseModel):
    signals: list[SignalIn] = Field(min_length=1)


class LookupResult(BaseModel):
    id: str | None = None
    type: str
    value: str
    matched: bool = False
    matches: list[MatchOut] = []
    suppressed: list[MatchOut] = []
    note: str | None = None
    error: str | None = None


class LookupOut(BaseModel):
    results: list[LookupResult]


class BankIn(BaseModel):
    name: str
    kind: Literal["normal", "negative"] = "normal"
    enabled: bool = True
    description: str = ""
    thresholds: dict[str, int] = {}
    policy: dict[str, Any] = {}


class BankPatch(BaseModel):
    enabled: bool | None = None
    description: str | None = None
    thresholds: dict[str, int] | None = None
    policy: dict[str, Any] | None = None


class BankOut(BaseModel):
    name: str
    kind: str
    enabled: bool
    thresholds: dict[str, int]
    policy: dict[str, Any]
    variants: int
    description: str
    entries: dict[str, int]
    created_at: str
    updated_at: str


class EntryIn(BaseModel):
    type: str
    value: str = Field(max_length=256)
    external_id: str | None = Field(None, max_length=200)
    labels: list[str] = []


class EntriesIn(BaseModel):
    signals: list[EntryIn] = Field(min_length=1)
    source_name: str = Field("api", max_length=200)
    strict: bool = False


class ImportOut(BaseModel):
    added: int
    already_present: int
    variants: int = 0
    local_features: int = 0
    skipped: list[str] = []


class EntryStateIn(BaseModel):
    state: Literal["active", "disputed", "disabled"]
    reason: str = Field("", max_length=2000)


class Problem(BaseModel):
    detail: str
