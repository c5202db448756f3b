"""``childshield report``: reports of confirmed material to clearinghouses, hotlines and police, through
the outbox (destinations and routes: $CHILDSHIELD_REPORTING_FILE, see docs/reporting.md)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from childshield.cli_bank import DbOption, _database
from childshield.cli_review import KeyFileOption
from childshield.reporting.config import ConfigError, ReportingConfig

report_app = typer.Typer(
    help="Reports to NCMEC's CyberTipline and other destinations (queue, auto, send, list, show).",
    no_args_is_help=True,
)
err = Console(stderr=True)


def _config() -> ReportingConfig:
    from childshield.reporting.config import load_config

    try:
        return load_config()
    except ConfigError as exc:
        err.print(f"[red]{escape(str(exc))}[/]", highlight=False)  # the file's [tables] are not markup
        raise typer.Exit(1) from None


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
    actor: Annotated[str, typer.Option(help="Who queues it (audit log).")] = "cli",
    db: DbOption = None,
) -> None:
    """Build and check the report of one incident with its evidence, and put it in the outbox.  What
    the evidence knows (times, URLs, account, IPs) is used unless an option says otherwise."""
    from childshield.reporting.manual import CannotQueue, queue_incident
    from childshield.textcheck import check_text

    config = _config()
    try:
        at = dt.datetime.fromisoformat(incident_time) if incident_time else None
        for what, text in [("--user-id", user_id), *(("--url", u) for u in url or ())]:
            check_text(text, what=what)  # UnsafeText is a ValueError
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    with _database(db) as database:
        try:
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
            )
        except CannotQueue as exc:
            err.print(f"[red]{escape(str(exc))}[/]")
            raise typer.Exit(1) from None
    err.print(f"queued report {report_id} to {destination} with {files} files")


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
        err.print(f"[yellow]not queued:[/] {problem}")
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
        err.print(f"[red]{name} stopped:[/] {why}")
    if delivered.stopped:
        raise typer.Exit(1)


@report_app.command("list")
def report_list(db: DbOption = None) -> None:
    """Reports as JSON Lines: destination, state, the clearinghouse's report id, attempts, last error."""
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
            err.print(f"[red]no report {report_id}[/]")
            raise typer.Exit(1)
        destination = config.destinations.get(report.destination)
        if destination is not None and destination.kind == "email":
            ref = reference(report, notice_settings().reference_prefix)
            sys.stdout.write(letter.text(report.document.encode(), ref))
        else:
            sys.stdout.write(report.document)
