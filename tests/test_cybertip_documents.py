"""CyberTipline documents: built in the schema's order, valid against childshield's schema of them, and
refused (with the reason) when they would be refused by the clearinghouse."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from childshield.reporting.cybertip import (
    AccountDisabled,
    ChatIncident,
    EmailIncident,
    Incident,
    IpEvent,
    PeerToPeerIncident,
    Person,
    ReportedFile,
    ReporterInfo,
    ReportInvalid,
    file_details_xml,
    report_xml,
    validate,
)

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
REPORTER = ReporterInfo(
    Person("reports@hotline.test", "Ana", "Lyst"),
    contact=Person("le-liaison@hotline.test", phone="+31 20 000 0000"),
    company_template="Preservation requests: legal@hotline.test",
    legal_url="https://hotline.test/legal",
)


def incident(**changes: object) -> Incident:
    base = {
        "at": NOW - dt.timedelta(hours=3),
        "urls": ["http://host.test/a.jpg", "http://host.test/gallery/1"],
        "third_party_hosted": True,
        "ip_events": [IpEvent("203.0.113.9", at=NOW - dt.timedelta(hours=4), port=443)],
        "platform": "childshield crawler",
    }
    return Incident(**{**base, **changes})  # type: ignore[arg-type]


def test_a_report_has_the_schema_order_and_validates() -> None:
    document = report_xml(incident(), REPORTER, now=NOW)
    root = etree.fromstring(document)
    assert [c.tag for c in root] == ["incidentSummary", "internetDetails", "reporter", "personOrUserReported"]
    assert [c.tag for c in root.find("reporter")] == [
        "reportingPerson",
        "contactPerson",
        "companyTemplate",
        "legalURL",
    ]
    assert root.findtext("incidentSummary/incidentDateTime") == "2026-11-30T09:00:00Z"
    assert root.find("internetDetails/webPageIncident").get("thirdPartyHostedContent") == "true"
    assert [u.text for u in root.iter("url")] == ["http://host.test/a.jpg", "http://host.test/gallery/1"]


def test_reports_that_would_be_refused_are_refused_here() -> None:
    with pytest.raises(ReportInvalid, match="in the future"):
        report_xml(incident(at=NOW + dt.timedelta(minutes=1)), REPORTER, now=NOW)
    with pytest.raises(ReportInvalid):
        report_xml(incident(incident_type="Something else"), REPORTER, now=NOW)
    spaced = etree.fromstring(report_xml(incident(urls=["http://host.test/a b.jpg\t"]), REPORTER, now=NOW))
    assert [u.text for u in spaced.iter("url")] == ["http://host.test/a%20b.jpg"]  # no whitespace sent


def test_order_and_required_elements_are_enforced() -> None:
    good = report_xml(incident(), REPORTER, now=NOW)
    root = etree.fromstring(good)
    summary, details = root[0], root[1]
    root.remove(details)
    root.insert(0, details)  # internetDetails before incidentSummary
    with pytest.raises(ReportInvalid, match=r"incidentSummary|internetDetails"):
        validate(etree.tostring(root))
    root = etree.fromstring(good)
    root.find("incidentSummary").remove(root.find("incidentSummary/incidentDateTime"))
    with pytest.raises(ReportInvalid, match="incidentDateTime"):
        validate(etree.tostring(root))
    assert summary is not None
    with pytest.raises(ReportInvalid, match="well-formed"):
        validate(b"<report><incidentSummary>")
    bomb = b'<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]><report>&b;</report>'
    with pytest.raises(ReportInvalid):
        validate(bomb)  # entities are not expanded into a valid document


def test_file_details_carry_hashes_and_the_classification_only_under_the_agreement() -> None:
    f = ReportedFile(
        "upload-17.jpg", md5="a" * 32, sha1="b" * 40, sha256="c" * 64, pdq="d" * 64,
        location="https://host.test/a.jpg", viewed_by_esp=True, publicly_available=True, classification="A2",
        info=["found by the crawler on https://host.test/gallery/1"],
    )  # fmt: skip
    without = etree.fromstring(file_details_xml(4564654, "f" * 32, f))
    assert without.find("industryClassification") is None
    with_mou = etree.fromstring(file_details_xml(4564654, "f" * 32, f, hash_sharing_mou=True))
    assert with_mou.findtext("industryClassification") == "A2"
    assert [(h.get("hashType"), len(h.text)) for h in with_mou.iter("originalFileHash")] == [
        ("MD5", 32), ("SHA1", 40), ("SHA256", 64), ("PDQ", 64),
    ]  # fmt: skip
    assert with_mou.findtext("fileViewedByEsp") == "true" and with_mou.findtext("fileRelevance") == "Reported"
    supplemental = ReportedFile("context.jpg", md5="e" * 32, supplemental=True, classification="A1")
    doc = etree.fromstring(file_details_xml(1, "x", supplemental, hash_sharing_mou=True))
    assert (
        doc.find("industryClassification") is None
        and doc.findtext("fileRelevance") == "Supplemental Reported"
    )


@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
@settings(max_examples=300, deadline=None)
def test_the_validator_never_crashes(data: bytes) -> None:
    with contextlib.suppress(ReportInvalid):
        validate(data)


def test_everything_a_reporter_can_say_goes_in_the_schemas_order() -> None:
    """Annotations, escalation, other incident kinds, the account's details and fate, file annotations,
    upload time and EXIF: element names and order as NCMEC's schema (with ``CHILDSHIELD_CYBERTIP_XSD``
    set, ``validate`` checks each document against NCMEC's own file too)."""
    at = NOW - dt.timedelta(hours=5)
    full = incident(
        escalate="the child is in danger now",
        annotations=["sadisticOnlineExploitation", "sextortion"],
        other=[
            ChatIncident("Messenger", "room 4", content="chat log"),
            EmailIncident(["a@mail.test", "a@mail.test"]),
            PeerToPeerIncident("eMule", [IpEvent("192.0.2.1", "Login", at)], "a.jpg"),
        ],
        user_id="u-1", esp_service="Messenger", screen_name="al", display_names=["Al"],
        profile_urls=["https://host.test/al"],
        account_disabled=AccountDisabled(True, at, user_notified=False),
    )  # fmt: skip
    root = etree.fromstring(report_xml(full, REPORTER, now=NOW))
    assert [c.tag for c in root.find("incidentSummary")] == [
        "incidentType", "platform", "escalateToHighPriority", "reportAnnotations", "incidentDateTime",
    ]  # fmt: skip
    assert [c.tag for c in root.find("incidentSummary/reportAnnotations")] == [
        "sextortion", "sadisticOnlineExploitation",
    ]  # fmt: skip
    assert [d[0].tag for d in root.iterfind("internetDetails")] == [
        "webPageIncident", "chatImIncident", "emailIncident", "peer2peerIncident",
    ]  # fmt: skip
    assert [e.text for e in root.iter("emailAddress")] == ["a@mail.test"]
    assert [c.tag for c in root.find("personOrUserReported")] == [
        "espIdentifier", "espService", "screenName", "displayName", "profileUrl", "ipCaptureEvent",
        "accountPermanentlyDisabled",
    ]  # fmt: skip
    disabled = root.find("personOrUserReported/accountPermanentlyDisabled")
    assert disabled.attrib == {"disabledDate": "2026-11-30T07:00:00Z", "userNotified": "false"}
    f = ReportedFile(
        "evidence-3", md5="a" * 32, original_file_name="IMG 0001.JPG", uploaded_at=at, exif_viewed=True,
        annotations=["liveStreaming", "generativeAi", "physicalHarm"], classification="B1",
        ip_event=IpEvent("192.0.2.1", "Upload", at),
    )  # fmt: skip
    details = etree.fromstring(file_details_xml(7, "f1", f, hash_sharing_mou=True))
    assert [c.tag for c in details] == [
        "reportId", "fileId", "fileName", "originalFileName", "uploadedToEspTimestamp", "fileViewedByEsp",
        "exifViewedByEsp", "fileRelevance", "fileAnnotations", "industryClassification", "originalFileHash",
        "ipCaptureEvent",
    ]  # fmt: skip
    assert (
        details.findtext("fileName") == "evidence-3"
        and details.findtext("originalFileName") == "IMG 0001.JPG"
    )
    assert [c.tag for c in details.find("fileAnnotations")] == [
        "physicalHarm",
        "liveStreaming",
        "generativeAi",
    ]


def test_names_outside_the_schemas_lists_are_refused_here() -> None:
    for changes, says in [
        ({"annotations": ["sextortion", "scam"]}, "unknown reportAnnotations: scam"),
        ({"ip_events": [IpEvent("192.0.2.1", "Uplaod")]}, "not one of Login"),
        ({"incident_type": "Spam"}, "not one NCMEC takes"),
        ({"urls": []}, "at least one URL"),
    ]:
        with pytest.raises(ReportInvalid, match=says):
            report_xml(incident(**changes), REPORTER, now=NOW)
    chat_only = etree.fromstring(report_xml(incident(urls=[], other=[ChatIncident()]), REPORTER, now=NOW))
    assert [d[0].tag for d in chat_only.iterfind("internetDetails")] == ["chatImIncident"]
    with pytest.raises(ReportInvalid, match="unknown fileAnnotations: deepfake"):
        file_details_xml(1, "x", ReportedFile("e-1", md5="a" * 32, annotations=["deepfake"]))


def test_ncmecs_schema_file_is_checked_too_when_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``CHILDSHIELD_CYBERTIP_XSD`` names NCMEC's file: a document ours takes but it refuses is refused
    (here a stand-in that wants a ``termsOfService`` in every report), and an unreadable file says so."""
    stand_in = tmp_path / "ncmec.xsd"
    stand_in.write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:complexType name="any">'
        '<xs:sequence><xs:any processContents="skip" minOccurs="0" maxOccurs="unbounded"/></xs:sequence>'
        '<xs:anyAttribute/></xs:complexType><xs:element name="report"><xs:complexType><xs:sequence>'
        '<xs:element name="incidentSummary" type="any"/><xs:element name="internetDetails" type="any"/>'
        '<xs:element name="reporter"><xs:complexType><xs:sequence>'
        '<xs:element name="reportingPerson" type="any"/><xs:element name="contactPerson" type="any" '
        'minOccurs="0"/><xs:element name="termsOfService" type="xs:string"/></xs:sequence></xs:complexType>'
        '</xs:element><xs:element name="personOrUserReported" type="any" minOccurs="0"/></xs:sequence>'
        "</xs:complexType></xs:element></xs:schema>"
    )
    monkeypatch.setenv("CHILDSHIELD_CYBERTIP_XSD", str(stand_in))
    bare = ReporterInfo(Person("reports@hotline.test"))
    with pytest.raises(ReportInvalid, match=r"NCMEC's schema: .*termsOfService"):
        report_xml(incident(), bare, now=NOW)
    assert report_xml(incident(), dataclasses.replace(bare, terms_of_service="ToS 4.2"), now=NOW)
    monkeypatch.setenv("CHILDSHIELD_CYBERTIP_XSD", str(tmp_path / "missing.xsd"))
    with pytest.raises(ReportInvalid, match=r"missing\.xsd \(CHILDSHIELD_CYBERTIP_XSD\) cannot be read"):
        report_xml(incident(), bare, now=NOW)
