"""``childshield takedown``: follow found material to its removal (notices, re-checks, figures)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from childshield.cli_app import App
from childshield.cli_bank import DbOption, _database
from childshield.cli_crawl import AllowOption, ResolveOption, _resolver
from childshield.cli_output import add_row, err, print_table, say, table

if TYPE_CHECKING:
    from childshield.takedown.intake import FollowResult
    from childshield.takedown.notices import SendResult

takedown_app = App(
    help="Notice and takedown: providers, notices, re-checks, removal figures.", no_args_is_help=True
)


@takedown_app.command("run")
def takedown_run(
    once: Annotated[
        bool, typer.Option("--once", help="One round, then exit (else every --every seconds).")
    ] = False,
    every: Annotated[float, typer.Option(min=1, help="Seconds between rounds.")] = 300.0,
    recheck_hours: Annotated[
        float, typer.Option(min=0.001, help="Hours between re-checks of an item.")
    ] = 1.0,
    allow: AllowOption = "",
    resolve: ResolveOption = None,
    db: DbOption = None,
) -> None:
    """Follow new hits (RDAP lookups), write the notices due, send them, and re-check what is online.
    Every failure is printed with its cause; with --once the exit status is 1 when any work failed (a
    lookup, a re-check, a notice).  Settings: CHILDSHIELD_SMTP_*, CHILDSHIELD_NOTICE_*,
    CHILDSHIELD_RDAP_BASE, CHILDSHIELD_RDAP_FAILURE_CACHE_SECONDS (see docs/takedown.md)."""
    from childshield.matching.matcher import Matcher
    from childshield.net.guard import AddressPolicy
    from childshield.takedown.intake import follow_hits
    from childshield.takedown.notices import plan, send_due
    from childshield.takedown.rdap import RdapClient
    from childshield.takedown.recheck import RecheckSettings, recheck_due
    from childshield.takedown.settings import notice_settings, rdap_base, rdap_failure_ttl, smtp_settings
    from childshield.takedown.template import TemplateError, load_template

    notices, smtp, failure_ttl = notice_settings(), smtp_settings(), rdap_failure_ttl()
    try:
        load_template(notices.template)  # refused now, with the reason, not as a failed round later
    except TemplateError as exc:
        err.print(f"cannot use the notice template: {exc}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    recheck = RecheckSettings(
        every=dt.timedelta(hours=recheck_hours),
        policy=AddressPolicy.from_text(allow),
        resolve=_resolver(list(resolve or [])),
    )
    stop = {"now": False}

    def halt(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, halt)
    with _database(db) as database:
        rdap = RdapClient(rdap_base())
        try:
            while True:
                try:
                    followed = follow_hits(database, rdap, failure_ttl=failure_ttl)
                    # re-check first: a reminder may only say what a check has just seen
                    checked = asyncio.run(recheck_due(database, Matcher.load(database), recheck))
                    planned = plan(database, notices)
                    sent = asyncio.run(send_due(database, notices, smtp))
                    say(
                        f"followed {followed.created} new ({followed.failed} lookups failed); re-checked "
                        f"{checked.checked}: {checked.removed} removed, {checked.still_online} still online, "
                        f"{checked.failed} checks failed; wrote {len(planned)} notices, sent {sent.sent} "
                        f"({sent.failed} not sent)"
                    )
                    _lookup_failures(followed)
                    for cause, count in checked.errors.most_common():
                        say(f"  re-check failed ({count}): {cause}")
                    _send_failures(sent)
                    if once and (checked.failed or followed.failed or sent.failed):
                        raise typer.Exit(1)  # work that could not be done is never a silent success
                except typer.Exit:
                    raise
                except Exception as exc:  # the database or a server away: say so, try again next round
                    if once:
                        raise
                    err.print(f"round failed: {type(exc).__name__}: {str(exc)[:300]}", markup=False)
                if once or stop["now"]:
                    return
                for _ in range(int(every * 10)):
                    if stop["now"]:
                        return
                    time.sleep(0.1)
        finally:
            rdap.close()


@takedown_app.command("send")
def takedown_send(db: DbOption = None) -> None:
    """Send the notices that are due (written by `takedown run`), once each."""
    from childshield.takedown.notices import send_due
    from childshield.takedown.settings import notice_settings, smtp_settings

    with _database(db) as database:
        sent = asyncio.run(send_due(database, notice_settings(), smtp_settings()))
    _send_failures(sent)
    say(f"sent {sent.sent} notices ({sent.failed} not sent)")
    if sent.failed:
        raise typer.Exit(1)


def _lookup_failures(followed: FollowResult) -> None:
    for ip, cause, error in followed.failures:
        say(f"  RDAP lookup failed ({cause}): {ip}: {error}")
    if followed.without_provider:
        say(
            f"  {followed.without_provider} online items have no provider yet: no notices until RDAP names "
            "one (asked again next round)"
        )


def _send_failures(sent: SendResult) -> None:
    for f in sent.failures:
        then = "failed for good" if f.final else "queued to be tried again"
        say(f"  notice {f.reference} to {f.to_addr} not sent ({f.cause}): {f.error}; {then}")
    if sent.stopped:
        say(
            "  sending stopped at a problem of ours or the server's: the other notices wait for a later round"
        )


@takedown_app.command("status")
def takedown_status_command(db: DbOption = None) -> None:
    """Items by state, those no notice can reach yet (no provider, no contact), notices by state, and
    errors by cause (re-checks, RDAP lookups, notices waiting or failed), as JSON."""
    from childshield.takedown.status import takedown_status

    with _database(db) as database:
        sys.stdout.write(json.dumps(takedown_status(database)) + "\n")


@takedown_app.command("stats")
def takedown_stats_command(
    by: Annotated[str, typer.Option(help="provider or country.")] = "provider",
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines instead of a table.")] = False,
    db: DbOption = None,
) -> None:
    """Per provider (or country): media, notices sent, removed, median and 90th percentile hours to removal,
    and how many were still online 24 hours, 7 days and 42 days after the first notice."""
    from childshield.takedown.stats import takedown_stats

    if by not in ("provider", "country"):
        raise typer.BadParameter("provider or country", param_hint="--by")
    with _database(db) as database:
        rows = takedown_stats(database, by=by)
    if as_json:
        for row in rows:
            sys.stdout.write(json.dumps(row) + "\n")
        return
    counts = ("media", "notices", "removed", "median h", "p90 h", ">24h", ">7d", ">42d")
    grid = table(by, *counts, right=counts)
    for r in rows:
        add_row(
            grid, str(r[by]), str(r["media"]), str(r["notices_sent"]), str(r["removed"]),
            str(r["median_hours_to_removal"] if r["median_hours_to_removal"] is not None else "-"),
            str(r["p90_hours_to_removal"] if r["p90_hours_to_removal"] is not None else "-"),
            str(r["online_after_24h"]), str(r["online_after_7d"]), str(r["online_after_42d"]),
        )  # fmt: skip
    print_table(grid)


@takedown_app.command("providers")
def takedown_providers(db: DbOption = None) -> None:
    """Providers found by RDAP, with their contacts (JSON Lines); those without one get no notices."""
    from sqlalchemy import select

    from childshield.store.models import Provider

    with _database(db) as database, database.session() as session:
        for p in session.scalars(select(Provider).order_by(Provider.key)).all():
            sys.stdout.write(
                json.dumps(
                    {"key": p.key, "name": p.name, "country": p.country, "abuse_email": p.abuse_email,
                     "contact_override": p.contact_override, "contact": p.contact}
                ) + "\n"
            )  # fmt: skip


@takedown_app.command("contact")
def takedown_contact(
    key: Annotated[str, typer.Argument(help="The provider's key (see `takedown providers`).")],
    email: Annotated[
        str, typer.Argument(help="Where its notices go ('' to use RDAP's abuse contact again).")
    ],
    db: DbOption = None,
) -> None:
    """Set the contact notices to a provider go to, over what RDAP says."""
    from childshield.takedown.hosting import clean_address, set_contact

    if email and not clean_address(email):
        raise typer.BadParameter("not an e-mail address", param_hint="EMAIL")
    with _database(db) as database:
        set_contact(database, key, email)
    err.print(f"notices to {key} go to {email or 'its RDAP abuse contact'}")


@takedown_app.command("template")
def takedown_template(
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the default template here to edit it.")
    ] = None,
    check: Annotated[
        Path | None,
        typer.Option(
            "--check", help="Check this template (compiles, renders a sample notice in the sandbox)."
        ),
    ] = None,
) -> None:
    """Print (or copy out) the default notice template, or check yours; use it with
    CHILDSHIELD_NOTICE_TEMPLATE.  Templates render in Jinja2's sandbox over plain data (docs/takedown.md)."""
    from childshield.takedown.notices import DEFAULT_TEMPLATE
    from childshield.takedown.template import SAMPLE_CONTEXT, TemplateError, load_template

    if check is not None:
        try:
            template = load_template(check)
        except TemplateError as exc:
            err.print(f"refused: {exc}", markup=False, highlight=False)
            raise typer.Exit(1) from None
        err.print(f"{check}: the template compiles and renders a sample notice", markup=False)
        subject, _ = template.render(SAMPLE_CONTEXT)
        err.print(f"sample subject: {subject}", markup=False, highlight=False)
        return
    text = DEFAULT_TEMPLATE.read_text()
    if out is None:
        sys.stdout.write(text)
        return
    out.write_text(text)
    err.print(f"wrote {out}; set CHILDSHIELD_NOTICE_TEMPLATE={out}")
