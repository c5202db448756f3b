"""A report as it goes into a signed evidence bundle (``vault export --report``): its documents as sent
(the CyberTipline XML and each file's details; or the letter as PDF and JSON), what became of it, and the
evidence it covers."""

from __future__ import annotations

import json

from sqlalchemy import select

from childshield.errors import NotFound
from childshield.reporting import letter
from childshield.reporting.cybertip import ReportedFile, file_details_xml
from childshield.reporting.mailer import reference
from childshield.store.db import Database
from childshield.store.models import Report, ReportFile
from childshield.vault.bundle import BundledReport


class NoSuchReport(NotFound, LookupError):
    """No report of that id.  A ``LookupError`` too, as callers catch it."""


def for_bundle(
    db: Database, report_id: int, *, prefix: str = "CS", hash_sharing_mou: bool = False
) -> tuple[list[int], BundledReport]:
    """The evidence ids of a report and the report itself, ready for ``export_bundle``
    (``hash_sharing_mou``: as the destination sends fileDetails, so they are the ones sent)."""
    with db.session() as session:
        report = session.get(Report, report_id)
        if report is None:
            raise NoSuchReport(f"no report {report_id}")
        files = session.scalars(
            select(ReportFile).where(ReportFile.report_id == report_id).order_by(ReportFile.id)
        ).all()
        document = report.document.encode()
        out: dict[str, bytes] = {}
        if document.lstrip().startswith(b"<"):
            out["report.xml"] = document
            for f in files:
                if f.remote_file_id and report.remote_id:
                    details = ReportedFile(**f.details)
                    xml = file_details_xml(
                        report.remote_id, f.remote_file_id, details, hash_sharing_mou=hash_sharing_mou
                    )
                    out[f"fileDetails-{f.evidence_id}.xml"] = xml
        else:
            ref = reference(report, prefix)
            out[f"{ref}.json"] = document
            out[f"{ref}.pdf"] = letter.pdf(document, ref)
        facts = {
            "destination": report.destination,
            "state": report.state,
            "remote_id": report.remote_id,
            "queued_at": report.created_at.isoformat(),
            "done_at": report.done_at.isoformat() if report.done_at else None,
            "files": [
                {"evidence_id": f.evidence_id, "remote_file_id": f.remote_file_id, "state": f.state}
                for f in files
            ],
        }
        out["report.json"] = json.dumps(facts, indent=1, sort_keys=True).encode()
        return [f.evidence_id for f in files], BundledReport(report.id, out, facts)
