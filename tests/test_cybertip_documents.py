"""CyberTipline documents: built in the schema's order, valid against childshield's schema of them, and
refused (with the reason) when they would be refused by the clearinghouse."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from childshield.reporting.cybertip import (
    Incident,
    IpEvent,
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
    with pytest.raises(ReportInvalid, match="at least one URL"):
        report_xml(incident(urls=[]), REPORTER, now=NOW)
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
