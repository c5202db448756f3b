"""CyberTipline documents: the ``report`` (one per incident) and a ``fileDetails`` per uploaded file, in
the element order NCMEC's schema requires, checked against childshield's own schema of the parts it emits
(``schema/cybertipline-subset.xsd``) and against the rules a schema cannot say (no future incident time,
classifications only under the Industry Hash Sharing agreement, never on supplemental files)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

from lxml import etree

from childshield.textcheck import UnsafeText, check_text
from childshield.timefmt import aware

SCHEMA = Path(__file__).parent / "schema" / "cybertipline-subset.xsd"
CSAM = "Child Pornography (possession, manufacture, and distribution)"
"""The incident type for known material (the legal term in the US statute NCMEC's form follows)."""
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"
_MULTILINE = frozenset({"companyTemplate", "termsOfService", "additionalInfo", "incidentDateTimeDescription"})
"""Elements whose text may have several lines (and tabs); everything else is one line."""


class ReportInvalid(ValueError):
    """A document that would be refused: the message lists why."""


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
    event: str = "Upload"
    at: dt.datetime | None = None
    possible_proxy: bool | None = None
    port: int | None = None


@dataclass(frozen=True)
class Incident:
    at: dt.datetime
    urls: Sequence[str]
    incident_type: str = CSAM
    platform: str = ""
    description: str = ""
    third_party_hosted: bool = False
    """The material is hosted by another company and we know nothing more (a hotline's crawl finds)."""
    user_id: str = ""
    screen_name: str = ""
    ip_events: Sequence[IpEvent] = ()
    additional_info: str = ""


@dataclass(frozen=True)
class ReportedFile:
    file_name: str
    md5: str
    sha1: str = ""
    sha256: str = ""
    pdq: str = ""
    location: str = ""
    viewed_by_esp: bool = False
    """A person at our end saw the whole file (a reviewer revealed it): a legally weighty statement."""
    publicly_available: bool | None = None
    supplemental: bool = False
    classification: str | None = None
    ip_event: IpEvent | None = None
    info: Sequence[str] = field(default_factory=tuple)


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
    node = etree.SubElement(parent, "ipCaptureEvent")
    _text(node, "ipAddress", event.address)
    _text(node, "eventName", event.event)
    if event.at is not None:
        _text(node, "dateTime", _time(event.at))
    if event.possible_proxy is not None:
        _text(node, "possibleProxy", event.possible_proxy)
    if event.port is not None:
        _text(node, "port", event.port)


def report_xml(incident: Incident, reporter: ReporterInfo, *, now: dt.datetime | None = None) -> bytes:
    """The ``report`` document of one incident (all its URLs in it), validated."""
    now = now or dt.datetime.now(dt.UTC)
    at = aware(incident.at)
    if at > now:
        raise ReportInvalid(f"the incident time {_time(at)} is in the future")
    if not incident.urls:
        raise ReportInvalid("a web page incident needs at least one URL")
    root = etree.Element("report")
    summary = etree.SubElement(root, "incidentSummary")
    _text(summary, "incidentType", incident.incident_type)
    if incident.platform:
        _text(summary, "platform", incident.platform)
    _text(summary, "incidentDateTime", _time(at))
    if incident.description:
        _text(summary, "incidentDateTimeDescription", incident.description)
    details = etree.SubElement(root, "internetDetails")
    page = etree.SubElement(details, "webPageIncident")
    if incident.third_party_hosted:
        page.set("thirdPartyHostedContent", "true")
    for url in dict.fromkeys(incident.urls):
        _text(page, "url", _url(url))
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
    if incident.user_id or incident.screen_name or incident.ip_events:
        user = etree.SubElement(root, "personOrUserReported")
        if incident.user_id:
            _text(user, "espIdentifier", incident.user_id)
        if incident.screen_name:
            _text(user, "screenName", incident.screen_name)
        for event in incident.ip_events:
            _ip(user, event)
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
    _text(root, "originalFileName", f.file_name)
    if f.location:
        _text(root, "locationOfFile", _url(f.location))
    _text(root, "fileViewedByEsp", f.viewed_by_esp)
    if f.publicly_available is not None:
        _text(root, "publiclyAvailable", f.publicly_available)
    _text(root, "fileRelevance", "Supplemental Reported" if f.supplemental else "Reported")
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


def validate(document: bytes) -> None:
    """Raise :class:`ReportInvalid` unless ``document`` is a valid ``report`` or ``fileDetails``."""
    try:
        tree = etree.fromstring(document, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise ReportInvalid(f"not well-formed XML: {exc}") from None
    if getattr(tree.getroottree().docinfo, "doctype", ""):
        raise ReportInvalid("a DOCTYPE is not allowed (no DTDs, no entities)")
    schema = _schema()
    try:
        valid = schema.validate(tree)
    except etree.XMLSchemaValidateError as exc:
        raise ReportInvalid(f"cannot be validated: {exc}") from None
    if not valid:
        errors = "; ".join(line.split(":", 1)[-1] for line in str(schema.error_log).splitlines()[:10])
        raise ReportInvalid(errors)


def _checked(root: etree._Element) -> bytes:
    document: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    validate(document)
    return document
