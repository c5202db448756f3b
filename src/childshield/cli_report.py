"""``childshield report``: reports of confirmed material to NCMEC's CyberTipline, through the outbox."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from typing import Annotated

import typer
from rich.console import Console

from childshield.cli_bank import DbOption, _database
from childshield.cli_review import KeyFileOption

report_app = typer.Typer(help="Reports to NCMEC's CyberTipline (queue, send, list).", no_args_is_help=True)
err = Console(stderr=True)


@report_app.command("queue")
def report_queue(
    evidence_ids: Annotated[list[int], typer.Argument(help="Evidence of one incident (all in one report).")],
    url: Annotated[list[str], typer.Option("--url", help="Where the incident happened (repeatable).")],
    reporter_email: Annotated[str, typer.Option(help="The reporting person's e-mail.")],
    incident_time: Annotated[str, typer.Option(help="ISO 8601 time of the incident (default: now).")] = "",
    third_party_hosted: Annotated[
        bool, typer.Option(help="Hosted by another company (hotline finds).")
    ] = False,
    user_id: Annotated[str, typer.Option(help="The reported account's id on your platform.")] = "",
    actor: Annotated[str, typer.Option(help="Who queues it (audit log).")] = "cli",
    key_file: KeyFileOption = None,
    db: DbOption = None,
) -> None:
    """Build and validate the report of one incident with its evidence, and put it in the outbox."""
    from sqlalchemy import select

    from childshield.reporting.cybertip import Incident, Person, ReporterInfo, ReportInvalid, report_xml
    from childshield.reporting.outbox import queue_report
    from childshield.store.models import Evidence, Reveal, ReviewItem

    try:
        at = dt.datetime.fromisoformat(incident_time) if incident_time else dt.datetime.now(dt.UTC)
        document = report_xml(
            Incident(at=at, urls=url, third_party_hosted=third_party_hosted, user_id=user_id),
            ReporterInfo(Person(reporter_email)),
        )
    except (ValueError, ReportInvalid) as exc:
        raise typer.BadParameter(str(exc)) from None
    with _database(db) as database:
        files = []
        with database.session() as session:
            for evidence_id in evidence_ids:
                row = session.get(Evidence, evidence_id)
                if row is None or row.deleted_at is not None or row.sealed is None:
                    err.print(f"[red]evidence {evidence_id} has no media to report[/]")
                    raise typer.Exit(1)
                item = session.get(ReviewItem, row.item_id) if row.item_id else None
                viewed = (
                    item is not None
                    and session.scalar(select(Reveal.id).where(Reveal.item_id == item.id).limit(1))
                    is not None
                )
                details = row.details or {}
                files.append(
                    (
                        evidence_id,
                        f"evidence-{evidence_id}",
                        {"file_name": f"evidence-{evidence_id}", "md5": details.get("media_md5") or "",
                         "sha256": row.sha256 or "", "pdq": row.pdq or "", "viewed_by_esp": viewed,
                         "classification": row.classification},
                    )
                )  # fmt: skip
        report_id = queue_report(database, document, files, actor=actor)
    err.print(f"queued report {report_id} with {len(files)} files")


@report_app.command("send")
def report_send(key_file: KeyFileOption = None, db: DbOption = None) -> None:
    """Send the reports that are due.  CHILDSHIELD_CYBERTIP_URL (default: NCMEC's test environment),
    CHILDSHIELD_CYBERTIP_USER, CHILDSHIELD_CYBERTIP_PASSWORD; CHILDSHIELD_HASH_SHARING_MOU=true to
    send industry classifications."""
    from childshield.cli_vault import _keyring
    from childshield.reporting.client import TEST, CyberTipClient
    from childshield.reporting.outbox import Stop, send_due

    keyring = _keyring(key_file)  # default: $CHILDSHIELD_MEDIA_KEY_FILE
    client = CyberTipClient(
        os.environ.get("CHILDSHIELD_CYBERTIP_URL", TEST),
        os.environ.get("CHILDSHIELD_CYBERTIP_USER", ""),
        os.environ.get("CHILDSHIELD_CYBERTIP_PASSWORD", ""),
    )
    mou = os.environ.get("CHILDSHIELD_HASH_SHARING_MOU", "").lower() in ("1", "true", "yes")
    with _database(db) as database:
        try:
            filed = send_due(database, client, keyring, hash_sharing_mou=mou)
        except Stop as exc:
            err.print(f"[red]stopped:[/] {exc}")
            raise typer.Exit(1) from None
        finally:
            client.close()
    err.print(f"filed {filed} reports")


@report_app.command("list")
def report_list(db: DbOption = None) -> None:
    """Reports as JSON Lines: state, the clearinghouse's report id, attempts, last error."""
    from sqlalchemy import select

    from childshield.store.models import Report

    with _database(db) as database, database.session() as session:
        for r in session.scalars(select(Report).order_by(Report.id)).all():
            sys.stdout.write(json.dumps({
                "id": r.id, "state": r.state, "remote_id": r.remote_id, "attempts": r.attempts,
                "last_error": r.last_error, "created_at": r.created_at.isoformat(),
                "done_at": r.done_at.isoformat() if r.done_at else None,
            }) + "\n")  # fmt: skip
