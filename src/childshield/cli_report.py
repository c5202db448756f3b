"""``childshield report``: reports of confirmed material to clearinghouses, hotlines and police, through
the outbox (destinations and routes: $CHILDSHIELD_REPORTING_FILE, see docs/reporting.md)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from childshield.cli_app import App
from childshield.cli_bank import DbOption, _database
from childshield.cli_output import console, err, say
from childshield.cli_review import KeyFileOption
from childshield.reporting.config import ReportingConfig

report_app = App(
    help="Reports to NCMEC's CyberTipline and other destinations "
    "(queue, auto, send, list, show, status, schema).",
    no_args_is_help=True,
)
out = console()


def _config() -> ReportingConfig:
    from childshield.reporting.config import load_config

    return load_config()  # a ConfigError is answered at the root, its [tables] printed as they are


@report_app.command("queue")
def report_queue(
    evidence_ids: Annotated[list[int], typer.Argument(help="Evidence of one incident (all in one report).")],
    url: Annotated[
        list[str] | None, typer.Option("--url", help="Where the incident happened (repeatable).")
    ] = None,
    destination: Annotated[str, typer.Option(help="A destination of the reporting file.")] = "cybertipline",
    reporter_email: Annotated[str, typer.Option(help="The reporting person's e-mail.")] = "",
    incident_time: Annotated[str, typer.Option(help="ISO 8601 time of the incident.")] = "",
    third_party_hosted: Annotated[
        bool | None, typer.Option(help="Hosted by another company (default: from the evidence).")
    ] = None,
    user_id: Annotated[str, typer.Option(help="The reported account's id on your platform.")] = "",
    incident_type: Annotated[
        str, typer.Option(help="NCMEC's incident type (default: known material's).")
    ] = "",
    kind: Annotated[
        str, typer.Option(help="How the material went: web_page, email, chat_im or peer2peer.")
    ] = "",
    annotation: Annotated[
        list[str] | None,
        typer.Option(
            help="A report annotation (sextortion, csamSolicitation, minorToMinorInteraction, "
            "spam, sadisticOnlineExploitation; repeatable)."
        ),
    ] = None,
    file_annotation: Annotated[
        list[str] | None,
        typer.Option(
            help="A file annotation (liveStreaming, generativeAi, physicalHarm, ...) for every "
            "file, or EVIDENCE_ID:NAME for one (repeatable)."
        ),
    ] = None,
    escalate: Annotated[
        str, typer.Option(help="Why NCMEC should treat it as urgent (a child at risk now).")
    ] = "",
    account_disabled: Annotated[
        str, typer.Option(help="What you did to the account: temporarily or permanently (disabled).")
    ] = "",
    disabled_at: Annotated[str, typer.Option(help="ISO 8601 time the account was disabled.")] = "",
    user_notified: Annotated[
        bool | None, typer.Option("--user-notified/--user-not-notified", help="Whether the user was told.")
    ] = None,
    notified_at: Annotated[str, typer.Option(help="ISO 8601 time the user was told.")] = "",
    exif_viewed: Annotated[
        bool | None, typer.Option(help="Whether someone at your end saw the files' EXIF data.")
    ] = None,
    actor: Annotated[str, typer.Option(help="Who queues it (audit log).")] = "cli",
    db: DbOption = None,
) -> None:
    """Build and check the report of one incident with its evidence, and put it in the outbox.  What
    the evidence knows (times, URLs, account, IPs, annotations) is used unless an option says otherwise;
    annotations are added to those the evidence has."""
    from childshield.reporting.manual import queue_incident
    from childshield.textcheck import check_text

    config = _config()
    try:
        at = dt.datetime.fromisoformat(incident_time) if incident_time else None
        for what, text in [
            ("--user-id", user_id),
            ("--escalate", escalate),
            *(("--url", u) for u in url or ()),
        ]:
            check_text(text, what=what, multiline=what == "--escalate")  # UnsafeText is a ValueError
        context, file_context = _given(
            incident_type, kind, annotation or [], file_annotation or [], escalate, account_disabled,
            disabled_at, user_notified, notified_at, exif_viewed,
        )  # fmt: skip
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    with _database(db) as database:
        report_id, files = queue_incident(
            database,
            config,
            evidence_ids,
            destination=destination,
            actor=actor,
            urls=url or (),
            user_id=user_id,
            at=at,
            third_party_hosted=third_party_hosted,
            reporter_email=reporter_email,
            context=context,
            file_context=file_context,
        )
    err.print(f"queued report {report_id} to {destination} with {files} files")


def _given(
    incident_type: str,
    kind: str,
    annotations: list[str],
    file_annotations: list[str],
    escalate: str,
    account_disabled: str,
    disabled_at: str,
    user_notified: bool | None,
    notified_at: str,
    exif_viewed: bool | None,
) -> tuple[dict[str, str], dict[int, dict[str, str]]]:
    """``report queue``'s options in the scan context's words (``reporting.context``): for the incident
    and for single files; a ValueError names what cannot be read."""
    context: dict[str, str] = {}
    for key, value in (
        ("incident_type", incident_type),
        ("incident_kind", kind),
        ("report_annotations", ",".join(annotations)),
        ("escalate", escalate.strip()),
        ("account_disabled", account_disabled),
        ("account_disabled_at", _iso(disabled_at, "--disabled-at")),
        ("user_notified_at", _iso(notified_at, "--notified-at")),
    ):
        if value:
            context[key] = value
    for key, flag in (("user_notified", user_notified), ("exif_viewed", exif_viewed)):
        if flag is not None:
            context[key] = "true" if flag else "false"
    per_file: dict[int, dict[str, str]] = {}
    every: list[str] = []
    for given in file_annotations:
        evidence, _, name = given.rpartition(":")
        if not evidence:
            every.append(name)
        elif evidence.isdigit():
            found = per_file.setdefault(int(evidence), {})
            found["file_annotations"] = ",".join(filter(None, [found.get("file_annotations", ""), name]))
        else:
            raise ValueError(f"--file-annotation {given!r}: write NAME or EVIDENCE_ID:NAME")
    if every:
        context["file_annotations"] = ",".join(every)
    return context, per_file


def _iso(value: str, option: str) -> str:
    """An ISO 8601 time with its zone, as given (ValueError naming the option otherwise)."""
    if not value:
        return ""
    try:
        at = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{option}: {value!r} is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise ValueError(f"{option}: {value!r} needs a time zone (e.g. +00:00)")
    return at.isoformat()


@report_app.command("auto")
def report_auto(actor: Annotated[str, typer.Option(help="Recorded as who queued.")] = "reporting",
                db: DbOption = None) -> None:  # fmt: skip
    """Queue reports of every live piece of evidence by the reporting file's routes, one per incident
    and destination (what ``serve`` does by itself with [auto].enabled)."""
    from childshield.reporting.auto import queue_confirmed

    config = _config()
    with _database(db) as database:
        queued = queue_confirmed(database, config, actor=actor)
    for problem in queued.problems:
        say(str(problem), label="not queued:", style="yellow")
    err.print(f"queued {len(queued.reports)} reports; {queued.waiting} incidents still settling")
    if queued.problems:
        raise typer.Exit(1)


@report_app.command("send")
def report_send(key_file: KeyFileOption = None, db: DbOption = None) -> None:
    """Send the reports that are due, to every destination.  CyberTipline: CHILDSHIELD_CYBERTIP_URL
    (default: NCMEC's test environment), CHILDSHIELD_CYBERTIP_USER, CHILDSHIELD_CYBERTIP_PASSWORD (or the
    destination's user_env/password_env); e-mail: CHILDSHIELD_SMTP_* as for removal notices."""
    from childshield.cli_vault import _keyring
    from childshield.reporting.deliver import deliver_due
    from childshield.takedown.settings import notice_settings, smtp_settings

    config = _config()
    needs_keys = any(d.kind == "cybertipline" for d in config.destinations.values())
    keyring = _keyring(key_file) if needs_keys else None  # default: $CHILDSHIELD_MEDIA_KEY_FILE
    prefix = notice_settings().reference_prefix
    with _database(db) as database:
        delivered = asyncio.run(deliver_due(database, config, keyring, smtp_settings(), prefix=prefix))
    for name, count in delivered.filed.items():
        err.print(f"{name}: filed {count} reports")
    for name, why in delivered.stopped.items():
        say(str(why), label=f"{name} stopped:", style="red")
    if delivered.stopped:
        raise typer.Exit(1)


@report_app.command("list")
def report_list(db: DbOption = None) -> None:
    """Reports as JSON Lines: destination, state, the clearinghouse's report id and the Request-ID of
    its latest answer (what NCMEC's support desk asks for), attempts, last error."""
    from childshield.reporting.outbox import listing

    with _database(db) as database:
        for row in listing(database):
            sys.stdout.write(json.dumps(row) + "\n")


@report_app.command("show")
def report_show(report_id: int, db: DbOption = None) -> None:
    """A queued report's document as it goes out (the XML, or the letter's text)."""
    from childshield.reporting import letter
    from childshield.reporting.mailer import reference
    from childshield.store.models import Report
    from childshield.takedown.settings import notice_settings

    config = _config()
    with _database(db) as database, database.session() as session:
        report = session.get(Report, report_id)
        if report is None:
            say(f"no report {report_id}", style="red")
            raise typer.Exit(1)
        destination = config.destinations.get(report.destination)
        if destination is not None and destination.kind == "email":
            ref = reference(report, notice_settings().reference_prefix)
            sys.stdout.write(letter.text(report.document.encode(), ref))
        else:
            sys.stdout.write(report.document)


@report_app.command("status")
def report_status(
    report_id: Annotated[
        int | None, typer.Argument(help="One report (default: all, and the connection).")
    ] = None,
    db: DbOption = None,
) -> None:
    """Where reports stand.  With a report id: its state, NCMEC's report id, the Request-ID of NCMEC's
    latest answer about it, attempts, last error and its files.  Without: whether each CyberTipline
    destination answers and takes the credentials (``GET /status``), and the reports by state.  Exits
    1 when a destination does not answer or refuses the credentials, or the report is unknown."""
    from collections import Counter

    from sqlalchemy import select

    from childshield.reporting.client import ApiError, CyberTipClient
    from childshield.store.models import Report, ReportFile
    from childshield.timefmt import utc

    with _database(db) as database, database.session() as session:
        if report_id is not None:
            report = session.get(Report, report_id)
            if report is None:
                err.print(f"no report {report_id}", markup=False)
                raise typer.Exit(1)
            files = session.scalars(
                select(ReportFile).where(ReportFile.report_id == report_id).order_by(ReportFile.id)
            ).all()
            lines = [
                f"report {report.id} to {report.destination}: {report.state}",
                f"  NCMEC report id: {report.remote_id or '-'}",
                f"  Request-ID of the latest answer: {report.request_id or '-'}",
                f"  queued {utc(report.created_at)}, done {utc(report.done_at)}, attempts {report.attempts}",
            ]
            if report.last_error:
                lines.append(f"  last error: {report.last_error}")
            for f in files:
                said = f"{f.state}, file id {f.remote_file_id or '-'}"
                lines.append(f"  file evidence {f.evidence_id} ({f.file_name}): {said}")
            for line in lines:
                out.print(line, markup=False)
            return
        counts = Counter(session.execute(select(Report.destination, Report.state)).tuples().all())
    for (destination, state), n in sorted(counts.items()):
        out.print(f"{destination}: {n} {state}", markup=False)
    failed = False
    for name, target in _config().destinations.items():
        if target.kind != "cybertipline":
            continue
        client = CyberTipClient(target.url, *target.credentials(), timeout=30)
        try:
            answer = client.status()
        except ApiError as exc:
            err.print(f"{name} ({target.url}): {exc}", markup=False)
            failed = True
            continue
        finally:
            client.close()
        if answer.ok:
            out.print(f"{name} ({target.url}) answers: {answer.said()}", markup=False)
        else:
            err.print(f"{name} ({target.url}) refuses: {answer.said()}", markup=False)
            failed = True
    if failed:
        raise typer.Exit(1)


@report_app.command("schema")
def report_schema(
    out_file: Annotated[Path, typer.Option("--out", help="Where to write NCMEC's schema file.")],
    destination: Annotated[str, typer.Option(help="A CyberTipline destination of the reporting file.")] = "",
) -> None:
    """Download NCMEC's schema of the report documents (``GET /xsd``, with the destination's
    credentials).  Point CHILDSHIELD_CYBERTIP_XSD at the file and every document is checked against it
    too (and the tests' local CyberTipline validates with it)."""
    from childshield.reporting.client import ApiError, CyberTipClient

    config = _config()
    chosen = [
        d
        for d in config.destinations.values()
        if d.kind == "cybertipline" and d.name in (destination, d.name)
    ]
    if destination:
        chosen = [d for d in chosen if d.name == destination]
    if not chosen:
        err.print(f"no CyberTipline destination {destination!r}", markup=False)
        raise typer.Exit(1)
    target = chosen[0]
    client = CyberTipClient(target.url, *target.credentials(), timeout=60)
    try:
        data = client.schema()
    except ApiError as exc:
        err.print(f"cannot download the schema from {target.url}: {exc}", markup=False)
        raise typer.Exit(1) from None
    finally:
        client.close()
    out_file.write_bytes(data)
    err.print(f"wrote NCMEC's schema ({len(data)} bytes) to {out_file}", markup=False)
