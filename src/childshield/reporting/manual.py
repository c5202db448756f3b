"""A report queued by a person (``report queue``, ``POST /v1/reports``): the evidence they name, as
one incident, to one destination, with what they say overriding what the evidence knows."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence

from childshield.errors import Invalid
from childshield.reporting import context as ctx
from childshield.reporting.config import ReportingConfig
from childshield.reporting.cybertip import ReportInvalid
from childshield.reporting.documents import NotReportable, build
from childshield.reporting.incident import IncidentFacts, evidence_facts
from childshield.reporting.outbox import queue_report
from childshield.store.db import Database


class CannotQueue(Invalid, ValueError):
    """The report cannot be queued as asked: the message says why.

    A ``ValueError`` too, as callers catch it."""


def queue_incident(
    db: Database,
    config: ReportingConfig,
    evidence_ids: Sequence[int],
    *,
    destination: str,
    actor: str,
    urls: Sequence[str] = (),
    user_id: str = "",
    at: dt.datetime | None = None,
    third_party_hosted: bool | None = None,
    reporter_email: str = "",
    context: Mapping[str, str] | None = None,
    file_context: Mapping[int, Mapping[str, str]] | None = None,
) -> tuple[int, int]:
    """Queue the report; returns its id and how many files it has.  ``context`` says more of the
    incident in the scan context's words (``reporting.context``: annotations, escalation, what was done
    to the account, ...), over what each file's context says (annotations are added to its own);
    ``file_context`` the same for one file (by evidence id)."""
    target = config.destinations.get(destination)
    if target is None:
        raise CannotQueue(f"no destination {destination!r}; known: {', '.join(config.destinations)}")
    if not evidence_ids:
        raise CannotQueue("name the evidence to report")
    with db.session() as session:
        files = evidence_facts(session, evidence_ids)
    missing = set(evidence_ids) - {f.evidence_id for f in files}
    if missing:
        raise CannotQueue(f"no live evidence {', '.join(map(str, sorted(missing)))}")
    extra = {**(context or {}), **({"user_id": user_id} if user_id else {})}
    per_file = file_context or {}
    unknown = set(per_file) - set(evidence_ids)
    if unknown:
        raise CannotQueue(
            f"file details for evidence not in the report: {', '.join(map(str, sorted(unknown)))}"
        )
    try:
        for given in (extra, *per_file.values()):
            ctx.check(given)
        files = [
            dataclasses.replace(f, context=_merged(f.context, extra, per_file.get(f.evidence_id, {})))
            for f in files
        ]
    except ValueError as exc:
        raise CannotQueue(str(exc)) from None
    incident = IncidentFacts(
        f"manual:{','.join(map(str, sorted(set(evidence_ids))))}",
        tuple(files),
        given_urls=tuple(urls),
        given_third_party=third_party_hosted,
        given_at=at,
    )
    reporter = dataclasses.replace(config.reporter, email=reporter_email or config.reporter.email)
    try:
        built = build(incident, target, reporter)
    except (NotReportable, ReportInvalid, ValueError) as exc:  # ValueError: text XML cannot hold
        raise CannotQueue(f"cannot build the report: {exc}") from None
    report_id = queue_report(db, built.document, built.files, actor=actor, destination=destination)
    return report_id, len(built.files)


def _merged(*contexts: Mapping[str, str]) -> dict[str, str]:
    """Later contexts over earlier ones; their tag lists added together."""
    out: dict[str, str] = {}
    for c in contexts:
        for key, value in c.items():
            if key in ctx.LISTS and out.get(key):
                value = ",".join(dict.fromkeys([*out[key].split(","), *value.split(",")]))
            out[key] = value
    return out
