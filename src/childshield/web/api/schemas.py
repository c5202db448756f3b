"""Request and response bodies of the API (published in /openapi.json)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Path as PathParam
from fastapi import Query
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StrictBool,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import core_schema

from childshield.banks import policy as bank_policy
from childshield.banks.service import NAME_PATTERN, THRESHOLD_RANGES
from childshield.hashing.result import HashResult
from childshield.matching.matcher import Match
from childshield.reporting.cybertip import EVENTS, FILE_ANNOTATIONS, REPORT_ANNOTATIONS
from childshield.textcheck import unsafe_character

# Characters refused in text that goes into reports, XML, CSV and logs: C0/C1 controls (CR/LF forge log
# lines and headers), format characters (bidirectional overrides and isolates reorder what a reviewer
# reads, zero-width ones hide text) and the line and paragraph separators: the Unicode categories Cc,
# Cf, Zl and Zp, written out (a test checks them against unicodedata) because scanning all of Unicode at
# import would cost a fifth of a second.  Lone surrogates (Cs) are refused too, outside the pattern:
# a JSON Schema validator's regex cannot name them, and no valid JSON text carries them.
_REFUSED = (
    (0x00, 0x1F),
    (0x7F, 0x9F),
    (0xAD, 0xAD),
    (0x600, 0x605),
    (0x61C, 0x61C),
    (0x6DD, 0x6DD),
    (0x70F, 0x70F),
    (0x890, 0x891),
    (0x8E2, 0x8E2),
    (0x180E, 0x180E),
    (0x200B, 0x200B),  # U+200C and U+200D, the joiners, are allowed (childshield.textcheck says why)
    (0x200E, 0x200F),
    (0x2028, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
)


def _char(cp: int) -> str:
    # Escapes where the character should not travel as itself (controls, invisible ones);
    # astral ones as themselves, since \U escapes are Python's and \u{} ECMAScript's.
    return f"\\u{cp:04x}" if cp <= 0xFFFF else chr(cp)


_REFUSED_CLASS = "".join(_char(a) if a == b else f"{_char(a)}-{_char(b)}" for a, b in _REFUSED)
TEXT_PATTERN = f"^[^{_REFUSED_CLASS}]*$"
"""Printable text, as a pattern (published in the schema, and what ``printable`` enforces)."""
_TEXT = re.compile(TEXT_PATTERN)
_NOT_BLANK = re.compile(f"^[^{_REFUSED_CLASS}]*[^{_REFUSED_CLASS}\\s][^{_REFUSED_CLASS}]*$")
# urlsplit's scheme, spelled so that any JSON Schema tool reads it alike (no inline flags)
_URL = re.compile(f"^[hH][tT][tT][pP][sS]?:[^{_REFUSED_CLASS}]*$")


def printable(value: str | None) -> str | None:
    """Text that goes into reports and XML: control and format characters are refused (a 422 saying so)."""
    # the one policy (childshield.textcheck); the pattern above publishes it for schema readers
    # (the pattern also names characters that later Unicode versions call format characters)
    if value is not None and (unsafe_character(value) is not None or not _TEXT.fullmatch(value)):
        raise ValueError(
            "control characters and invisible format characters (bidirectional overrides, zero-width"
            " characters) are not allowed"
        )
    return value


@dataclass(frozen=True)
class Text:
    """A string of printable text (``printable``) of at most ``max_length`` characters, with its rule
    published: ``Annotated[str, Text(200)]``.  ``blank=False``: something besides white space."""

    max_length: int
    blank: bool = True
    url: bool = False
    """An http(s) URL: the text starts with ``http:`` or ``https:`` (in any case)."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        inner = core_schema.str_schema(max_length=self.max_length, min_length=None if self.blank else 1)
        return core_schema.no_info_after_validator_function(self._check, inner)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        out = handler(schema)
        out["pattern"] = self._pattern.pattern
        return out

    @property
    def _pattern(self) -> re.Pattern[str]:
        return _URL if self.url else _TEXT if self.blank else _NOT_BLANK

    def _check(self, value: str) -> str:
        printable(value)
        if self.url and not _URL.fullmatch(value):
            raise ValueError("must be an http(s) URL")
        if not self.blank and not _NOT_BLANK.fullmatch(value):
            raise ValueError("must not be blank")
        return value


ROW_ID_MAX = 2**63 - 1
"""The largest row id (and integer parameter) the databases store: SQLite's and PostgreSQL's BIGINT."""
RowId = Annotated[int, PathParam(ge=1, le=ROW_ID_MAX, description="A row id")]
"""A row id in a path (bounded by what the databases can store)."""
AfterId = Annotated[int, Query(ge=0, le=ROW_ID_MAX, description="Only rows after this id")]
"""A row id to list from, in a query (bounded like ``RowId``)."""


def _json_integer(value: object) -> object:
    # JSON Schema's integer: 3 and 3.0 alike, never true or "3" (pydantic's lax int takes both)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    return value


Integer = Annotated[int, BeforeValidator(_json_integer)]
"""An integer in a JSON body, as JSON Schema means it (``3.0`` is 3; ``true`` and ``"3"`` are refused)."""


def _integral(values: dict[str, Any]) -> dict[str, Any]:
    # The bank services check settings as Python values: 80.0 is the integer JSON Schema says it is.
    return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in values.items()}


class _Input(BaseModel):
    """Request bodies: finite numbers only (``NaN`` and the infinities are refused)."""

    model_config = ConfigDict(allow_inf_nan=False)


class AllowedByOut(BaseModel):
    """The allow-list (negative bank) entry that cleared a suppressed match."""

    bank: str
    entry_id: int
    signal_type: str
    distance: int
    query_variant: str | None = Field(None, description="The query's variant that matched the entry")
    external_id: str | None = None
    source_name: str
    labels: list[str] = Field(
        description="The entry's labels; ``rejected:...`` ones name the kinds of match it clears "
        "(made by a review rejection; none: every kind)"
    )

    @classmethod
    def of(cls, m: Match) -> AllowedByOut:
        return cls(
            bank=m.bank,
            entry_id=m.entry_id,
            signal_type=m.signal_type,
            distance=m.distance,
            query_variant=m.query_variant or None,
            external_id=m.external_id,
            source_name=m.source_name,
            labels=list(m.labels),
        )


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
    labels: list[str] = Field([], description="The entry's labels (classifications, e.g. A1)")
    allowed_by: AllowedByOut | None = Field(
        None, description="For a suppressed match: the allow-list entry that cleared it"
    )

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
            labels=list(m.labels),
            allowed_by=AllowedByOut.of(m.cleared_by) if m.cleared_by is not None else None,
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


_IP_SCHEMA = WithJsonSchema(
    {"anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}], "maxLength": 64}
)


def _tags(value: object) -> object:
    # a list in JSON; in a query, repeated (?report_annotations=a&report_annotations=b) or comma-separated
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return value  # refused by the type
    split = [
        t.strip() if isinstance(t, str) else t
        for v in value
        for t in (v.split(",") if isinstance(v, str) else [v])
    ]
    return [t for t in split if t != ""]


_ZONED = re.compile(r"^\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d{1,9})?([Zz]|[+-]\d\d:\d\d)$")


def _zoned(value: object) -> str:
    """An RFC 3339 date-time with its zone (what the schema says), as ISO 8601."""
    if not isinstance(value, str) or not _ZONED.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time with its time zone, e.g. 2026-11-02T08:30:00Z")
    try:
        return dt.datetime.fromisoformat(value.upper()).isoformat()
    except ValueError:
        raise ValueError(f"{value!r} is not a real time") from None


def _flag(value: object) -> object:
    # a JSON boolean, or in a query exactly true or false (not 1, yes, on: the schema says boolean)
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


ZonedTime = Annotated[
    str,
    BeforeValidator(_zoned),
    WithJsonSchema({"type": "string", "format": "date-time", "maxLength": 40}),
]
"""A time with its zone, kept as ISO 8601 text."""
Flag = Annotated[bool, BeforeValidator(_flag), WithJsonSchema({"type": "boolean"})]


ReportTags = Annotated[
    Annotated[list[Literal[REPORT_ANNOTATIONS]], Field(max_length=len(REPORT_ANNOTATIONS))]  # type: ignore[valid-type]
    | None,
    BeforeValidator(_tags),
    Field(description="NCMEC's report annotations that apply"),
]
FileTags = Annotated[
    Annotated[list[Literal[FILE_ANNOTATIONS]], Field(max_length=len(FILE_ANNOTATIONS))]  # type: ignore[valid-type]
    | None,
    BeforeValidator(_tags),
    Field(description="NCMEC's file annotations that apply"),
]


class ScanContext(_Input):
    """Who and where, for a report to a clearinghouse if the content is confirmed (all optional; kept
    with the decision, and only when the content matched).  docs/reporting.md says how each goes into
    a CyberTipline report."""

    incident: Annotated[str, Text(200)] | None = Field(
        None, description="Your key of the incident: files with the same key go in one report"
    )
    user_id: Annotated[str, Text(200)] | None = Field(
        None, description="The uploading account's id on your platform"
    )
    screen_name: Annotated[str, Text(200)] | None = Field(None, description="...and its screen name")
    display_name: Annotated[str, Text(200)] | None = Field(None, description="...its display name")
    profile_url: Annotated[str, Text(2000, url=True)] | None = Field(None, description="...its profile page")
    service: Annotated[str, Text(200)] | None = Field(
        None, description="Your product or service the account used (NCMEC's espService)"
    )
    ip: Annotated[str, Field(max_length=64), _IP_SCHEMA] | None = Field(
        None, description="An IP address the account used"
    )
    ip_event: Literal[EVENTS] | None = Field(  # type: ignore[valid-type]
        None, description="What the account did from that address (default: Unknown)"
    )
    ip_at: ZonedTime | None = Field(None, description="When it did (with its time zone)")
    location: Annotated[str, Text(2000, url=True)] | None = Field(
        None, description="The http(s) URL where the content was (or would have been) posted"
    )
    file_name: Annotated[str, Text(1000, blank=False)] | None = Field(
        None, description="The file's name as the user uploaded it (default: a multipart upload's)"
    )
    uploaded_at: ZonedTime | None = Field(None, description="When the user uploaded it to you")
    exif_viewed: Flag | None = Field(None, description="Whether someone at your end saw its EXIF data")
    file_annotations: FileTags = None
    report_annotations: ReportTags = None
    escalate: Annotated[str, Text(3000, blank=False)] | None = Field(
        None, description="Why the report is urgent (a child at risk now): escalates it at NCMEC"
    )
    account_disabled: Literal["temporarily", "permanently"] | None = Field(
        None, description="What you did to the account"
    )
    account_disabled_at: ZonedTime | None = Field(None, description="...and when")
    user_notified: Flag | None = Field(None, description="Whether the account holder was told")
    user_notified_at: ZonedTime | None = Field(None, description="...and when")
    incident_kind: Literal["web_page", "email", "chat_im", "peer2peer"] | None = Field(
        None, description="How the content went (default: web_page)"
    )
    chat_client: Annotated[str, Text(200)] | None = Field(None, description="chat_im: the messaging app")
    chat_room: Annotated[str, Text(200)] | None = Field(None, description="chat_im: the room or group")
    email_address: Annotated[str, Text(320)] | None = Field(None, description="email: an address involved")
    p2p_client: Annotated[str, Text(200)] | None = Field(None, description="peer2peer: the client program")

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_address(value)  # ValueError: a 422 saying so
        return value

    def stored(self, *, file_name: str = "", media_url: str = "") -> dict[str, str] | None:
        """The context as kept with a decision: text only (times in ISO 8601, lists comma-separated,
        flags true/false).  ``file_name``: the upload's own name, unless the caller gave one;
        ``media_url``: the URL the content was fetched from."""
        values: dict[str, str] = {}
        for key, value in self.model_dump().items():
            if value is None or value == "" or value == []:
                continue
            if isinstance(value, bool):
                values[key] = "true" if value else "false"
            elif isinstance(value, list):
                values[key] = ",".join(dict.fromkeys(value))
            else:
                values[key] = str(value)
        if file_name and "file_name" not in values:
            values["file_name"] = file_name
        if media_url:
            values["media_url"] = media_url
        return values or None


class UrlIn(_Input):
    url: Annotated[str, Text(2000, url=True)] = Field(
        description="http(s) URL of an image; private addresses are refused"
    )
    context: ScanContext | None = None


class SignalIn(_Input):
    type: str = Field(max_length=20, description="pdq, md5, sha1 or sha256", examples=["pdq"])
    value: str = Field(max_length=256)
    quality: Integer | None = Field(None, ge=0, le=100)
    id: str | None = Field(None, max_length=200, description="Echoed back, to pair answers with questions")


class LookupIn(_Input):
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


def _thresholds_schema() -> dict[str, Any]:
    properties = {
        signal.value: {"type": "integer", "minimum": low, "maximum": high}
        for signal, (low, high) in THRESHOLD_RANGES.items()
    }
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _policy_schema() -> dict[str, Any]:
    """What ``banks.policy.validate_policy`` accepts, from the same definitions (it does the checking)."""
    action = {"type": "string", "enum": list(bank_policy.ACTIONS)}
    properties: dict[str, Any] = {}
    for f in dataclasses.fields(bank_policy.Policy):
        if f.name == "action":
            properties[f.name] = action
        elif f.name == "label_actions":
            properties[f.name] = {
                "type": "object",
                "maxProperties": 100,
                "propertyNames": {"minLength": 1, "maxLength": 100},
                "additionalProperties": action,
            }
        elif f.name in bank_policy._RANGES:
            low, high = bank_policy._RANGES[f.name]
            properties[f.name] = {"type": "integer", "minimum": low, "maximum": high}
        elif f.type == "bool":
            properties[f.name] = {"type": "boolean"}
        else:  # a new kind of setting: publish it here, as validate_policy checks it
            raise TypeError(f"policy setting {f.name} has no published schema")
    return {"type": "object", "properties": properties, "additionalProperties": False}


# Checked by the bank services (one place for the CLI and the API); their rules published here.
Thresholds = Annotated[
    dict[str, Any],
    AfterValidator(_integral),
    WithJsonSchema(_thresholds_schema()),
    Field(description="Match distances by signal type (merged into the bank's)"),
]
BankPolicy = Annotated[
    dict[str, Any],
    AfterValidator(_integral),
    WithJsonSchema(_policy_schema()),
    Field(description="Matching of edited copies and actions (docs/matching-quality.md)"),
]


class BankIn(_Input):
    name: str = Field(pattern=f"^{NAME_PATTERN.pattern}$", description="Letters, digits, '_', '.', '-'")
    kind: Literal["normal", "negative"] = "normal"
    enabled: StrictBool = True
    description: str = ""
    thresholds: Thresholds = {}
    policy: BankPolicy = {}


class BankPatch(_Input):
    enabled: StrictBool | None = None
    description: str | None = None
    thresholds: Thresholds | None = None
    policy: BankPolicy | None = None


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


# The import path's limits (banks.formats): at most 50 labels of 200 characters, an external id of 200.
MAX_LABELS = 50
MAX_LABEL = 200


class EntryIn(_Input):
    type: str = Field(max_length=20, description="pdq, md5, sha1 or sha256")
    value: str = Field(max_length=256)
    external_id: Annotated[str, Text(200)] | None = None
    labels: list[Annotated[str, Text(MAX_LABEL)]] = Field(
        [], max_length=MAX_LABELS, description="Classifications; blank ones are dropped, as on import"
    )

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        return [x.strip() for x in value if x.strip()]


class EntriesIn(_Input):
    signals: list[EntryIn] = Field(min_length=1)
    source_name: Annotated[str, Text(200)] = "api"
    strict: StrictBool = False


class ImportOut(BaseModel):
    added: int
    already_present: int
    variants: int = 0
    local_features: int = 0
    skipped: list[str] = []


class EntryActive(_Input):
    state: Literal["active"]
    reason: Annotated[str, Text(2000)] = ""


class EntryWithdrawn(_Input):
    state: Literal["disputed", "disabled"]
    reason: Annotated[str, Text(2000, blank=False)] = Field(description="Why (required)")


EntryStateIn = Annotated[EntryActive | EntryWithdrawn, Field(discriminator="state")]
"""An entry's new state; disputing or disabling it needs a reason."""


class FieldProblem(BaseModel):
    loc: list[str | int] = Field(description="Where: body, query, path or header, then the field's path")
    msg: str
    type: str = Field(description="The kind of problem (pydantic's error type)")


class Problem(BaseModel):
    """Every refusal (4xx) and failure (5xx): a sentence saying why; for invalid input, each problem."""

    detail: str = Field(description="Why, in a sentence")
    errors: list[FieldProblem] = Field(
        default_factory=list, description="For invalid input (422): every field refused, and why"
    )


_PROBLEM_TEXT = {
    400: "The body could not be read (not UTF-8 JSON, or a broken form)",
    401: "No API key, or an invalid or revoked one",
    403: "The API key's role may not do this",
    404: "Not found",
    405: "Method not allowed (``Allow`` names the methods this path has)",
    409: "Conflicts with the current state",
    413: "Too large",
    415: "Unsupported content type",
    422: "Invalid input: ``detail`` says why (``errors`` field by field)",
    429: "Too many requests for this API key (``Retry-After`` says when to try again)",
    503: "Busy or not ready: ``detail`` says which (``Retry-After`` says when to try again)",
}
_PROBLEM_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
    405: {"Allow": {"schema": {"type": "string"}, "description": "The methods this path has"}},
    429: {"Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait"}},
    503: {"Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait"}},
}


def problems(*codes: int, json_ref: bool = False, **described: str) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: these refusals, in the ``Problem`` shape (``described``: own
    descriptions by code, e.g. ``c404="no such bank"``).  ``json_ref``: for a route whose own answers
    are not JSON (FastAPI would give the model the route's media type): ``Problem`` named as JSON."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"description": described.get(f"c{code}", _PROBLEM_TEXT[code])}
        if json_ref:
            entry["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        else:
            entry["model"] = Problem
        if code in _PROBLEM_HEADERS:
            entry["headers"] = _PROBLEM_HEADERS[code]
        out[code] = entry
    return out
