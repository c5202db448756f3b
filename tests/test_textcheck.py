"""Bidirectional and other invisible controls never reach a report: the shared character policy
(``childshield.textcheck``), the report builders that use it, and the CLI that takes such text."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from childshield.reporting.config import Destination, Reporter
from childshield.reporting.cybertip import Incident, Person, ReporterInfo, ReportInvalid, report_xml
from childshield.reporting.documents import NotReportable, build
from childshield.reporting.incident import EvidenceFacts, IncidentFacts
from childshield.textcheck import UnsafeText, check_text

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
BIDI = [chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C]]
PERSIAN = "\u0645\u0631\u06cc\u0645\u200c\u0647\u0627"  # a name with a zero-width non-joiner
SPOOF = "invoice\u202egpj.exe"  # shows as "invoiceexe.jpg"


@pytest.mark.parametrize("char", [*BIDI, "\x00", "\x1b", "\x7f", "\x85", "\u2028", "\ufeff", "\U000e0041"])
def test_controls_and_bidirectional_characters_are_refused(char: str) -> None:
    with pytest.raises(UnsafeText, match=f"U\\+{ord(char):04X}"):
        check_text(f"name{char}x", what="screen_name")
    with pytest.raises(UnsafeText):
        check_text(f"line one\n{char}", multiline=True)


def test_ordinary_text_passes() -> None:
    for text in ("Ana Lyst", PERSIAN, "👩\u200d💻 dev", "https://host.test/a?b=1", ""):
        assert check_text(text) == text
    assert check_text("line one\n\tline two", multiline=True)
    for one_line_only in ("a\nb", "a\tb", "a\rb"):
        with pytest.raises(UnsafeText):
            check_text(one_line_only)
    with pytest.raises(UnsafeText):
        check_text("a\r\nb", multiline=True)  # LF ends a line; a CR is a control


def facts(**context: str) -> IncidentFacts:
    f = EvidenceFacts(
        evidence_id=1,
        content_id="c1",
        sha256="0" * 64,
        md5="0" * 32,
        pdq="",
        classification="A1",
        banks=frozenset({"known"}),
        labels=frozenset(),
        source="scan",
        decided_at=NOW - dt.timedelta(hours=2),
        preserved_at=NOW - dt.timedelta(hours=1),
        context={"location": "https://platform.test/p/1", **context},
        viewed=False,
        has_media=True,
    )
    return IncidentFacts("platform/user:u1", [f])


@pytest.mark.parametrize("kind", ["cybertipline", "email"])
def test_a_report_with_a_bidi_override_in_its_context_is_refused(kind: str) -> None:
    reporter = Reporter(email="reports@platform.test", platform="platform")
    destination = Destination("dest", kind)
    build(facts(user_id="u1", screen_name="plain name"), destination, reporter, now=NOW)  # the control
    for field in ("screen_name", "user_id", "location"):
        value = "https://platform.test/" + SPOOF if field == "location" else SPOOF
        with pytest.raises(NotReportable, match="U\\+202E"):
            build(facts(**{field: value}), destination, reporter, now=NOW)


def test_the_cybertipline_document_refuses_them_itself() -> None:
    reporter = ReporterInfo(Person("reports@platform.test"), company_template="Legal process: legal@x.test")
    at = NOW - dt.timedelta(hours=1)
    report_xml(Incident(at=at, urls=["https://platform.test/p/1"], screen_name=PERSIAN), reporter, now=NOW)
    with pytest.raises(ReportInvalid, match="screenName may not contain U\\+2067"):
        report_xml(Incident(at=at, urls=["https://p.test/1"], screen_name="a\u2067b"), reporter, now=NOW)


def test_the_report_command_refuses_them(tmp_path: Path) -> None:
    env = {**os.environ, "CHILDSHIELD_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    command = [sys.executable, "-m", "childshield.cli", "report", "queue", "1", "--user-id", SPOOF]
    ran = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert ran.returncode == 2 and "U+202E" in ran.stderr and "Traceback" not in ran.stderr
