"""Reports queued by policy: every piece of live evidence goes, by the reporting routes, to each of its
destinations once, grouped into incidents (one report per incident and destination).

An incident is queued once its newest evidence is ``settle`` old, so that files arriving together
share a report.  Evidence already in a report to a destination (whatever became of that report) is not
queued there again: a failed report is for a person to look at, not for a loop to resend.  Queuing is
serialised across workers and processes, so two services never queue the same evidence twice."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from childshield.reporting.config import ReportingConfig
from childshield.reporting.cybertip import ReportInvalid
from childshield.reporting.documents import Built, NotReportable, build
from childshield.reporting.incident import EvidenceFacts, evidence_facts, incidents
from childshield.reporting.outbox import add_report
from childshield.store.db import Database, one_at_a_time
from childshield.store.models import Report, ReportFile, utcnow
from childshield.timefmt import aware

log = logging.getLogger("childshield.reporting")


@dataclass
class Queued:
    reports: list[int] = field(default_factory=list)
    waiting: int = 0
    """Incidents not settled yet."""
    problems: list[str] = field(default_factory=list)
    """Incidents that cannot be reported as they are (each says why)."""


def queue_confirmed(
    db: Database, config: ReportingConfig, *, now: dt.datetime | None = None, actor: str = "reporting"
) -> Queued:
    now = aware(now or utcnow())
    out = Queued()
    built_reports: list[tuple[str, Built]] = []
    with db.session() as session:  # read and build without holding any lock
        done = _reported(session)
        pending: dict[str, list[EvidenceFacts]] = {}
        for f in evidence_facts(session):
            for name in config.destinations_for(f.classification, set(f.banks), f.source):
                destination = config.destinations.get(name)
                if destination is None or (f.evidence_id, name) in done:
                    continue
                if destination.needs_media and not f.has_media:
                    continue
                pending.setdefault(name, []).append(f)
    for name, files in pending.items():
        destination = config.destinations[name]
        for incident in incidents(files):
            if max(f.preserved_at for f in incident.files) > now - config.settle:
                out.waiting += 1
                continue
            try:
                built_reports.append((name, build(incident, destination, config.reporter, now=now)))
            except (NotReportable, ReportInvalid, ValueError) as exc:  # ValueError: text XML cannot hold
                out.problems.append(f"{name}, incident {incident.key}: {exc}")
    if built_reports:
        with db.session() as session:  # check again and queue, one queuer at a time
            one_at_a_time(session, "childshield.reporting.auto", "reports")
            done = _reported(session)
            for name, built in built_reports:
                if any((evidence_id, name) in done for evidence_id, _, _ in built.files):
                    continue  # another queuer was first
                out.reports.append(
                    add_report(session, built.document, built.files, actor=actor, destination=name)
                )
    for problem in out.problems:
        log.warning("cannot queue a report: %s", problem)
    return out


def _reported(session: Session) -> set[tuple[int, str]]:
    """(evidence id, destination) of every file in any report."""
    query = select(ReportFile.evidence_id, Report.destination).join(Report, Report.id == ReportFile.report_id)
    return {(evidence_id, destination) for evidence_id, destination in session.execute(query)}
