"""CyberTipline documents: the ``report`` (one per incident) and a ``fileDetails`` per uploaded file, in
the element order NCMEC's schema requires, checked against childshield's own schema of the parts it emits
(``schema/cybertipline-subset.xsd``), against NCMEC's own schema file when one is configured
(``CHILDSHIELD_CYBERTIP_XSD``: the file NCMEC serves at ``GET /xsd``), and against the rules a schema
cannot say (no future incident time, classifications only under the Industry Hash Sharing agreement,
never on supplemental files)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

from lxml import etree

from childshield.errors import Invalid
from childshield.reporting.config import ncmec_schema_file
from childshield.textcheck import UnsafeText, check_text
from childshield.timefmt import aware

SCHEMA = Path(__file__).parent / "schema" / "cybertipline-subset.xsd"
CSAM = "Child Pornography (possession, manufacture, and distribution)"
"""The incident type for known material (the legal term in the US statute NCMEC's form follows)."""
INCIDENT_TYPES = (
    CSAM,
    "Child Sex Trafficking",
    "Child Sex Tourism",
    "Child Sexual Molestation",
    "Misleading Domain Name",
    "Misleading Words or Digital Images on the Internet",
    "Online Enticement of Children for Sexual Acts",
    "Unsolicited Obscene Material Sent to a Child",
)
"""The summary's ``incidentType`` values NCMEC's schema enumerates."""
EVENTS = ("Login", "Registration", "Purchase", "Upload", "Other", "Unknown")
"""What a user did from an IP address (the schema's ``ipCaptureType``)."""
REPORT_ANNOTATIONS = (
    "sextortion",
    "csamSolicitation",
    "minorToMinorInteraction",
    "spam",
    "sadisticOnlineExploitation",
)
"""Tags of a report (``reportAnnotations``), in the schema's order."""
FILE_ANNOTATIONS = (
    "animeDrawingVirtualHentai",
    "potentialMeme",
    "viral",
    "possibleSelfProduction",
    "physicalHarm",
    "violenceGore",
    "bestiality",
    "liveStreaming",
    "infant",
    "generativeAi",
)
"""Tags of a file (``fileAnnotations``), in the schema's order."""
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"
_MULTILINE = frozenset(
    {
        "companyTemplate",
        "termsOfService",
        "additionalInfo",
        "incidentDateTimeDescription",
        "content",
        "escalateToHighPriority",
    }
)
"""Elements whose text may have several lines (and tabs); everything else is one line."""


class ReportInvalid(Invalid, ValueError):
    """A document that would be refused: the message lists why.  A ``ValueError`` too, as callers catch it."""


@dataclass(frozen=True)
class Person:
    email: str
    first_name: str = ""
    last_name: str = ""
    phone: str = ""


@dataclass(frozen=True)
class ReporterInfo:
    reporting: Person
    contact: Person | None = None
    company_template: str = ""
    """What law enforcement should know about every report (legal process, retention, emergencies)."""
    terms_of_service: str = ""
    legal_url: str = ""


@dataclass(frozen=True)
class IpEvent:
    address: str
    event: str = "Unknown"
    """One of ``EVENTS``: what the user did from the address, as the platform said (else Unknown)."""
    at: dt.datetime | None = None
    """When the user did it (never a time of ours, such as the scan's)."""
    possible_proxy: bool | None = None
    port: int | None = None


@dataclass(frozen=True)
class EmailIncident:
    """The material went by e-mail (``emailIncident``)."""

    addresses: Sequence[str] = ()
    content: str = ""
    additional_info: str = ""


@dataclass(frozen=True)
class ChatIncident:
    """The material went by chat or instant messaging (``chatImIncident``)."""

    client: str = ""
    room: str = ""
    content: str = ""
    additional_info: str = ""


@dataclass(frozen=True)
class PeerToPeerIncident:
    """The material went over a peer-to-peer network (``peer2peerIncident``)."""

    client: str = ""
    ip_events: Sequence[IpEvent] = ()
    file_names: str = ""
    additional_info: str = ""


OtherIncident = EmailIncident | ChatIncident | PeerToPeerIncident


@dataclass(frozen=True)
class AccountDisabled:
    """What the platform did to the reported account (``accountTemporarilyDisabled`` or
    ``accountPermanentlyDisabled``)."""

    permanently: bool
    at: dt.datetime | None = None
    user_notified: bool | None = None
    notified_at: dt.datetime | None = None
    reenabled_at: dt.datetime | None = None
    """Only for a temporary suspension."""


@dataclass(frozen=True)
class Incident:
    at: dt.datetime
    urls: Sequence[str] = ()
    """The web pages (``webPageIncident``); an incident needs these or ``other``."""
    incident_type: str = CSAM
    platform: str = ""
    escalate: str = ""
    """Why NCMEC should treat the report as urgent (a child at risk now); empty: not escalated."""
    annotations: Sequence[str] = ()
    """``REPORT_ANNOTATIONS`` that apply."""
    description: str = ""
    third_party_hosted: bool = False
    """The material is hosted by another company and we know nothing more (a hotline's crawl finds)."""
    other: Sequence[OtherIncident] = ()
    """How else the material went: e-mail, chat, peer-to-peer."""
    user_id: str = ""
    esp_service: str = ""
    """The platform's product or service the reported account used."""
    screen_name: str = ""
    display_names: Sequence[str] = ()
    profile_urls: Sequence[str] = ()
    ip_events: Sequence[IpEvent] = ()
    account_disabled: AccountDisabled | None = None
    additional_info: str = ""


@dataclass(frozen=True)
class ReportedFile:
    file_name: str
    """Our name of the file (``fileName``): the one it is uploaded under."""
    md5: str
    sha1: str = ""
    sha256: str = ""
    pdq: str = ""
    original_file_name: str = ""
    """The name the user uploaded it under (``originalFileName``), where known."""
    uploaded_at: dt.datetime | None = None
    """When the user uploaded it to the platform (``uploadedToEspTimestamp``), where known."""
    location: str = ""
    viewed_by_esp: bool = False
    """A person at our end saw the whole file (a reviewer revealed it): a legally weighty statement."""
    exif_viewed: bool | None = None
    """Whether a person at the platform saw the file's EXIF data, where the platform said."""
    publicly_available: bool | None = None
    supplemental: bool = False
    annotations: Sequence[str] = ()
    """``FILE_ANNOTATIONS`` that apply."""
    classification: str | None = None
    ip_event: IpEvent | None = None
    info: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if isinstance(self.uploaded_at, str):  # as stored in the outbox (JSON)
            object.__setattr__(self, "uploaded_at", dt.datetime.fromisoformat(self.uploaded_at))
        if isinstance(self.ip_event, dict):
            event = dict(self.ip_event)
            if isinstance(event.get("at"), str):
                event["at"] = dt.datetime.fromisoformat(event["at"])
            object.__setattr__(self, "ip_event", IpEvent(**event))


def _text(parent: etree._Element, name: str, value: object) -> etree._Element:
    if isinstance(value, str):  # every text of a document comes through here
        try:
            check_text(value, what=name, multiline=name in _MULTILINE)
        except UnsafeText as exc:
            raise ReportInvalid(str(exc)) from None
    child = etree.SubElement(parent, name)
    child.text = (
        value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    )
    return child


def _time(value: dt.datetime) -> str:
    return aware(value).astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _url(value: str) -> str:
    return quote(value.strip(), safe=_URL_SAFE)  # whitespace and controls percent-encoded: NCMEC refuses them


def _person(parent: etree._Element, name: str, person: Person) -> None:
    node = etree.SubElement(parent, name)
    if person.first_name:
        _text(node, "firstName", person.first_name)
    if person.last_name:
        _text(node, "lastName", person.last_name)
    if person.phone:
        _text(node, "phone", person.phone)
    _text(node, "email", person.email)


def _ip(parent: etree._Element, event: IpEvent) -> None:
    if event.event not in EVENTS:
        raise ReportInvalid(f"the IP event {event.event!r} is not one of {', '.join(EVENTS)}")
    node = etree.SubElement(parent, "ipCaptureEvent")
    _text(node, "ipAddress", event.address)
    _text(node, "eventName", event.event)
    if event.at is not None:
        _text(node, "dateTime", _time(event.at))
    if event.possible_proxy is not None:
        _text(node, "possibleProxy", event.possible_proxy)
    if event.port is not None:
        _text(node, "port", event.port)


def _flags(parent: etree._Element, name: str, chosen: Sequence[str], known: Sequence[str]) -> None:
    """A tag list (``reportAnnotations``, ``fileAnnotations``): one ``true`` element per tag."""
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise ReportInvalid(f"unknown {name}: {', '.join(unknown)} (known: {', '.join(known)})")
    if chosen:
        node = etree.SubElement(parent, name)
        for tag in known:  # the schema's order, each once
            if tag in chosen:
                _text(node, tag, True)


def _other(parent: etree._Element, detail: OtherIncident) -> None:
    if isinstance(detail, EmailIncident):
        node = etree.SubElement(parent, "emailIncident")
        for address in dict.fromkeys(detail.addresses):
            _text(node, "emailAddress", address)
        if detail.content:
            _text(node, "content", detail.content)
    elif isinstance(detail, ChatIncident):
        node = etree.SubElement(parent, "chatImIncident")
        if detail.client:
            _text(node, "chatClient", detail.client)
        if detail.room:
            _text(node, "chatRoomName", detail.room)
        if detail.content:
            _text(node, "content", detail.content)
    else:
        node = etree.SubElement(parent, "peer2peerIncident")
        if detail.client:
            _text(node, "client", detail.client)
        for event in detail.ip_events:
            _ip(node, event)
        if detail.file_names:
            _text(node, "fileNames", detail.file_names)
    if detail.additional_info:
        _text(node, "additionalInfo", detail.additional_info)


def _account(parent: etree._Element, account: AccountDisabled) -> None:
    node = _text(
        parent, "accountPermanentlyDisabled" if account.permanently else "accountTemporarilyDisabled", True
    )
    if account.at is not None:
        node.set("disabledDate", _time(account.at))
    if account.user_notified is not None or account.notified_at is not None:
        node.set("userNotified", "true" if account.user_notified is not False else "false")
    if account.notified_at is not None:
        node.set("userNotifiedDate", _time(account.notified_at))
    if account.reenabled_at is not None and not account.permanently:
        node.set("reenabledDate", _time(account.reenabled_at))


def _reported(root: etree._Element, incident: Incident) -> None:
    """``personOrUserReported``, in the schema's order, when anything is known of the account."""
    if not (
        incident.user_id
        or incident.esp_service
        or incident.screen_name
        or incident.display_names
        or incident.profile_urls
        or incident.ip_events
        or incident.account_disabled
    ):
        return
    user = etree.SubElement(root, "personOrUserReported")
    if incident.user_id:
        _text(user, "espIdentifier", incident.user_id)
    if incident.esp_service:
        _text(user, "espService", incident.esp_service)
    if incident.screen_name:
        _text(user, "screenName", incident.screen_name)
    for name in dict.fromkeys(incident.display_names):
        _text(user, "displayName", name)
    for url in dict.fromkeys(incident.profile_urls):
        _text(user, "profileUrl", _url(url))
    for event in incident.ip_events:
        _ip(user, event)
    if incident.account_disabled is not None:
        _account(user, incident.account_disabled)


def report_xml(incident: Incident, reporter: ReporterInfo, *, now: dt.datetime | None = None) -> bytes:
    """The ``report`` document of one incident (all its URLs in it), validated."""
    now = now or dt.datetime.now(dt.UTC)
    at = aware(incident.at)
    if at > now:
        raise ReportInvalid(f"the incident time {_time(at)} is in the future")
    if not incident.urls and not incident.other:
        raise ReportInvalid(
            "an incident needs at least one URL (or its e-mail, chat or peer-to-peer details)"
        )
    if incident.incident_type not in INCIDENT_TYPES:
        raise ReportInvalid(f"the incident type {incident.incident_type!r} is not one NCMEC takes")
    root = etree.Element("report")
    summary = etree.SubElement(root, "incidentSummary")
    _text(summary, "incidentType", incident.incident_type)
    if incident.platform:
        _text(summary, "platform", incident.platform)
    if incident.escalate.strip():
        _text(summary, "escalateToHighPriority", incident.escalate.strip())
    _flags(summary, "reportAnnotations", incident.annotations, REPORT_ANNOTATIONS)
    _text(summary, "incidentDateTime", _time(at))
    if incident.description:
        _text(summary, "incidentDateTimeDescription", incident.description)
    if incident.urls:
        details = etree.SubElement(root, "internetDetails")
        page = etree.SubElement(details, "webPageIncident")
        if incident.third_party_hosted:
            page.set("thirdPartyHostedContent", "true")
        for url in dict.fromkeys(incident.urls):
            _text(page, "url", _url(url))
    for other in incident.other:
        _other(etree.SubElement(root, "internetDetails"), other)
    rep = etree.SubElement(root, "reporter")
    _person(rep, "reportingPerson", reporter.reporting)
    if reporter.contact is not None:
        _person(rep, "contactPerson", reporter.contact)
    for name, value in (
        ("companyTemplate", reporter.company_template),
        ("termsOfService", reporter.terms_of_service),
        ("legalURL", _url(reporter.legal_url) if reporter.legal_url else ""),
    ):
        if value:
            _text(rep, name, value)
    _reported(root, incident)
    if incident.additional_info:
        _text(root, "additionalInfo", incident.additional_info)
    return _checked(root)


def file_details_xml(
    report_id: int, file_id: str, f: ReportedFile, *, hash_sharing_mou: bool = False
) -> bytes:
    """The ``fileDetails`` document of one uploaded file, validated.  The industry classification is
    sent only by companies under NCMEC's Industry Hash Sharing agreement (``hash_sharing_mou``), and
    never for a supplemental file."""
    root = etree.Element("fileDetails")
    _text(root, "reportId", report_id)
    _text(root, "fileId", file_id)
    _text(root, "fileName", f.file_name)
    if f.original_file_name:
        _text(root, "originalFileName", f.original_file_name)
    if f.uploaded_at is not None:
        _text(root, "uploadedToEspTimestamp", _time(f.uploaded_at))
    if f.location:
        _text(root, "locationOfFile", _url(f.location))
    _text(root, "fileViewedByEsp", f.viewed_by_esp)
    if f.exif_viewed is not None:
        _text(root, "exifViewedByEsp", f.exif_viewed)
    if f.publicly_available is not None:
        _text(root, "publiclyAvailable", f.publicly_available)
    _text(root, "fileRelevance", "Supplemental Reported" if f.supplemental else "Reported")
    _flags(root, "fileAnnotations", f.annotations, FILE_ANNOTATIONS)
    if f.classification and hash_sharing_mou and not f.supplemental:
        _text(root, "industryClassification", f.classification)
    for kind, value in (("MD5", f.md5), ("SHA1", f.sha1), ("SHA256", f.sha256), ("PDQ", f.pdq)):
        if value:
            _text(root, "originalFileHash", value).set("hashType", kind)
    if f.ip_event is not None:
        _ip(root, f.ip_event)
    for text in f.info:
        if text.strip():
            _text(root, "additionalInfo", text)
    return _checked(root)


@lru_cache(maxsize=1)
def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA)))


@lru_cache(maxsize=4)
def _ncmec_schema(path: str) -> etree.XMLSchema:
    try:
        return etree.XMLSchema(etree.parse(path, parser=etree.XMLParser(no_network=True)))
    except (OSError, etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
        raise ReportInvalid(
            f"NCMEC's schema file {path} (CHILDSHIELD_CYBERTIP_XSD) cannot be read: {exc}"
        ) from None


def validate(document: bytes, *, schema_file: str | None = None) -> None:
    """Raise :class:`ReportInvalid` unless ``document`` is a valid ``report`` or ``fileDetails``: valid
    against childshield's schema, and against NCMEC's schema file (``schema_file``, by default
    ``CHILDSHIELD_CYBERTIP_XSD``) when there is one."""
    try:
        tree = etree.fromstring(document, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise ReportInvalid(f"not well-formed XML: {exc}") from None
    if getattr(tree.getroottree().docinfo, "doctype", ""):
        raise ReportInvalid("a DOCTYPE is not allowed (no DTDs, no entities)")
    if tree.tag not in ("report", "fileDetails"):
        raise ReportInvalid(f"a {tree.tag!r} is neither a report nor fileDetails")
    path = ncmec_schema_file() if schema_file is None else schema_file
    schemas = [("", _schema())] + ([("NCMEC's schema: ", _ncmec_schema(path))] if path else [])
    for said, schema in schemas:
        try:
            valid = schema.validate(tree)
        except etree.XMLSchemaValidateError as exc:
            raise ReportInvalid(f"{said}cannot be validated: {exc}") from None
        if not valid:
            errors = "; ".join(line.split(":", 1)[-1] for line in str(schema.error_log).splitlines()[:10])
            raise ReportInvalid(said + errors)


def _checked(root: etree._Element) -> bytes:
    document: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    validate(document)
    return document
