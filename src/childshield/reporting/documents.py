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

from childshield.errors import Invalid
from childshield.reporting import context as ctx
from childshield.reporting.config import Destination, Reporter
from childshield.reporting.cybertip import (
    ChatIncident,
    EmailIncident,
    Incident,
    OtherIncident,
    PeerToPeerIncident,
    Person,
    ReporterInfo,
    report_xml,
)
from childshield.reporting.incident import EvidenceFacts, IncidentFacts
from childshield.textcheck import UnsafeText, check_text

LETTER_FORMAT = "childshield-report-letter/1"


class NotReportable(Invalid, ValueError):
    """An incident this destination cannot take as it is (the message says what is missing).

    A ``ValueError`` too, as callers catch it."""


@dataclass(frozen=True)
class Built:
    document: bytes
    files: list[tuple[int, str, dict[str, Any]]]
    """(evidence id, file name, what the file's details say)."""


def _file(f: EvidenceFacts) -> dict[str, Any]:
    """What the file's ``fileDetails`` will say (``cybertip.ReportedFile``'s fields, as JSON): ours is
    ``evidence-N`` (the name it is uploaded under), the user's is the original name."""
    uploaded, ip = f.uploaded_at, f.upload_ip
    details: dict[str, Any] = {
        "file_name": f"evidence-{f.evidence_id}",
        "original_file_name": f.original_name,
        "md5": f.md5,
        "sha256": f.sha256,
        "pdq": f.pdq,
        "viewed_by_esp": f.viewed,
        "exif_viewed": f.exif_viewed,
        "annotations": list(f.annotations),
        "classification": f.classification,
        "location": f.location,
        "uploaded_at": uploaded.isoformat() if uploaded else None,
    }
    if ip is not None:
        details["ip_event"] = {
            "address": ip.address,
            "event": ip.event,
            "at": ip.at.isoformat() if ip.at else None,
        }
    return details


def _other(incident: IncidentFacts) -> list[OtherIncident]:
    """The incident's e-mail, chat or peer-to-peer details, as the files' contexts give them."""
    kind, contexts = incident.kind, incident.contexts
    if kind == "email":
        return [EmailIncident(addresses=ctx.distinct(c.get("email_address", "") for c in contexts))]
    if kind == "chat_im":
        return [
            ChatIncident(client=ctx.first(contexts, "chat_client"), room=ctx.first(contexts, "chat_room"))
        ]
    if kind == "peer2peer":
        names = ctx.distinct(f.original_name for f in incident.files)
        return [PeerToPeerIncident(client=ctx.first(contexts, "p2p_client"), file_names=", ".join(names))]
    return []


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
    one_line += [(k, v) for c in incident.contexts for k, v in c.items() if k != "escalate"]
    for name in ("email", "first_name", "last_name", "phone", "organisation", "legal_url", "platform"):
        one_line.append((f"reporter {name}", getattr(reporter, name)))
    try:
        for what, value in one_line:
            check_text(value, what=what)
        check_text(reporter.company_template or "", what="company_template", multiline=True)
        check_text(incident.escalate, what="escalate", multiline=True)
    except UnsafeText as exc:
        raise NotReportable(str(exc)) from None


def cybertip(incident: IncidentFacts, reporter: Reporter, *, now: dt.datetime | None = None) -> Built:
    missing = [f.evidence_id for f in incident.files if not f.has_media]
    if missing:
        raise NotReportable(f"no media kept for evidence {', '.join(map(str, missing))}: NCMEC takes files")
    if not reporter.email:
        raise NotReportable("the reporter's e-mail is not set ([reporter].email)")
    other = _other(incident)
    urls = incident.urls or ([reporter.default_url] if reporter.default_url and not other else [])
    if not urls and not other:
        raise NotReportable("no URL for the incident: pass location with the scan, or set default_url")
    document = report_xml(
        Incident(
            at=incident.at,
            urls=urls,
            incident_type=incident.incident_type,
            platform=reporter.platform,
            escalate=incident.escalate,
            annotations=incident.annotations,
            third_party_hosted=incident.third_party,
            other=other,
            user_id=incident.user_id,
            esp_service=incident.service,
            screen_name=incident.screen_name,
            display_names=incident.display_names,
            profile_urls=incident.profile_urls,
            ip_events=incident.ip_events,
            account_disabled=incident.account_disabled,
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
            "ips": [
                {
                    "address": ip.address,
                    "event": ip.event,
                    "at": ip.at.isoformat(timespec="seconds") if ip.at else None,
                }
                for ip in incident.ip_events
            ],
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
                "original_file_name": f.original_name,
                "matched_at": f.decided_at.isoformat(timespec="seconds"),
                "confirmed_by_review": True,
                "media_preserved": f.has_media,
            }
            for f in incident.files
        ],
    }
    document = json.dumps(body, indent=1, ensure_ascii=False).encode()
    return Built(document, [(f.evidence_id, f"evidence-{f.evidence_id}", _file(f)) for f in incident.files])
