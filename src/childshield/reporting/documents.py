"""An incident's report in each destination's form, built (and checked) when it is queued.

* ``cybertipline``: the CyberTipline ``report`` XML, and per file what its ``fileDetails`` will say.
* ``email``: a letter (JSON of the facts; rendered as text and PDF when sent, by ``reporting.letter``)
  for a national hotline or the police.  It carries hashes, times and places, never the media: that
  goes, when asked for, in a signed evidence bundle (``vault export --report``).

To add a kind (for example the UK NCA's API, or Canada's): a builder here, a sender next to
``reporting.outbox`` / ``reporting.mailer``, its name in ``config.KINDS`` and ``deliver.deliver_due``
(docs/reporting.md, "Adding a destination").
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from childshield.reporting.config import Destination, Reporter
from childshield.reporting.cybertip import Incident, IpEvent, Person, ReporterInfo, report_xml
from childshield.reporting.incident import EvidenceFacts, IncidentFacts
from childshield.textcheck import UnsafeText, check_text

LETTER_FORMAT = "childshield-report-letter/1"


class NotReportable(ValueError):
    """An incident this destination cannot take as it is (the message says what is missing)."""


@dataclass(frozen=True)
class Built:
    document: bytes
    files: list[tuple[int, str, dict[str, Any]]]
    """(evidence id, file name, what the file's details say)."""


def _file(f: EvidenceFacts) -> dict[str, Any]:
    return {
        "file_name": f"evidence-{f.evidence_id}",
        "md5": f.md5,
        "sha256": f.sha256,
        "pdq": f.pdq,
        "viewed_by_esp": f.viewed,
        "classification": f.classification,
        "location": f.location,
    }


def build(
    incident: IncidentFacts, destination: Destination, reporter: Reporter, *, now: dt.datetime | None = None
) -> Built:
    _check_texts(incident, reporter)
    if destination.kind == "cybertipline":
        return cybertip(incident, reporter, now=now)
    if destination.kind == "email":
        return letter(incident, reporter, now=now)
    raise NotReportable(f"no document builder for destination kind {destination.kind!r}")


def _check_texts(incident: IncidentFacts, reporter: Reporter) -> None:
    """Text from the scan's context (the platform's, or whoever called) and from the reporting file must
    read as it is stored: no control or bidirectional characters (``textcheck``), in either kind."""
    one_line = [("url", u) for u in incident.urls]
    one_line += [("user_id", incident.user_id), ("screen_name", incident.screen_name)]
    one_line += [("location", f.location or "") for f in incident.files]
    one_line += [("classification", f.classification or "") for f in incident.files]
    for name in ("email", "first_name", "last_name", "phone", "organisation", "legal_url", "platform"):
        one_line.append((f"reporter {name}", getattr(reporter, name)))
    try:
        for what, value in one_line:
            check_text(value, what=what)
        check_text(reporter.company_template or "", what="company_template", multiline=True)
    except UnsafeText as exc:
        raise NotReportable(str(exc)) from None


def cybertip(incident: IncidentFacts, reporter: Reporter, *, now: dt.datetime | None = None) -> Built:
    missing = [f.evidence_id for f in incident.files if not f.has_media]
    if missing:
        raise NotReportable(f"no media kept for evidence {', '.join(map(str, missing))}: NCMEC takes files")
    if not reporter.email:
        raise NotReportable("the reporter's e-mail is not set ([reporter].email)")
    urls = incident.urls or ([reporter.default_url] if reporter.default_url else [])
    if not urls:
        raise NotReportable("no URL for the incident: pass location with the scan, or set default_url")
    document = report_xml(
        Incident(
            at=incident.at,
            urls=urls,
            platform=reporter.platform,
            third_party_hosted=incident.third_party,
            user_id=incident.user_id,
            screen_name=incident.screen_name,
            ip_events=[IpEvent(ip, "Upload", at) for ip, at in incident.ips],
        ),
        ReporterInfo(
            Person(reporter.email, reporter.first_name, reporter.last_name, reporter.phone),
            company_template=reporter.company_template,
            legal_url=reporter.legal_url,
        ),
        now=now,
    )
    return Built(document, [(f.evidence_id, f"evidence-{f.evidence_id}", _file(f)) for f in incident.files])


def letter(incident: IncidentFacts, reporter: Reporter, *, now: dt.datetime | None = None) -> Built:
    if not reporter.email:
        raise NotReportable("the reporter's e-mail is not set ([reporter].email)")
    body = {
        "format": LETTER_FORMAT,
        "prepared_at": (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
        "reporter": {
            "organisation": reporter.organisation,
            "name": " ".join(p for p in (reporter.first_name, reporter.last_name) if p),
            "email": reporter.email,
            "phone": reporter.phone,
            "notes": reporter.company_template,
        },
        "incident": {
            "first_seen": incident.at.isoformat(timespec="seconds"),
            "urls": incident.urls,
            "third_party_hosted": incident.third_party,
            "user_id": incident.user_id,
            "screen_name": incident.screen_name,
            "ips": [{"address": ip, "at": at.isoformat(timespec="seconds")} for ip, at in incident.ips],
        },
        "files": [
            {
                "evidence_id": f.evidence_id,
                "sha256": f.sha256,
                "md5": f.md5,
                "pdq": f.pdq,
                "classification": f.classification,
                "banks": sorted(f.banks),
                "location": f.location,
                "matched_at": f.decided_at.isoformat(timespec="seconds"),
                "confirmed_by_review": True,
                "media_preserved": f.has_media,
            }
            for f in incident.files
        ],
    }
    document = json.dumps(body, indent=1, ensure_ascii=False).encode()
    return Built(document, [(f.evidence_id, f"evidence-{f.evidence_id}", _file(f)) for f in incident.files])
