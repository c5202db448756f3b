"""``childshield vault``: preserved evidence, legal holds, and signed bundles for law enforcement."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from childshield.cli_app import App
from childshield.cli_bank import DbOption, _database
from childshield.cli_output import err, say
from childshield.cli_review import KeyFileOption
from childshield.review.keys import Keyring

vault_app = App(help="Evidence: preserve, hold, export signed bundles, verify them.", no_args_is_help=True)
Actor = Annotated[str, typer.Option("--actor", help="Who does this (recorded in the audit log).")]


def _keyring(key_file: Path | None) -> Keyring:
    return Keyring.load(key_file, create=False)


@vault_app.command("keygen")
def vault_keygen(
    private: Annotated[Path, typer.Argument(help="Where the private signing key goes (mode 0600).")],
    public: Annotated[Path, typer.Argument(help="Where the public key goes (give it to recipients).")],
) -> None:
    """A new Ed25519 key pair for signing bundles."""
    from childshield.vault.bundle import generate_keys

    try:
        print_ = generate_keys(private, public)
    except FileExistsError:
        say(f"{private} exists already", style="red")
        raise typer.Exit(1) from None
    err.print(f"signing key {print_}")


@vault_app.command("preserve")
def vault_preserve(
    days: Annotated[int, typer.Option(min=1, help="Retention in days.")] = 365,
    key_file: KeyFileOption = None,
    db: DbOption = None,
) -> None:
    """Take items confirmed by review into the vault (the service also does this every few minutes)."""
    import datetime as dt

    from childshield.vault.store import preserve_confirmed

    keyring = _keyring(key_file)
    with _database(db) as database:
        count = preserve_confirmed(database, keyring, retention=dt.timedelta(days=days))
    err.print(f"preserved {count}")


@vault_app.command("list")
def vault_list(db: DbOption = None) -> None:
    """Evidence as JSON Lines (no media)."""
    from childshield.vault.store import listing

    with _database(db) as database:
        for row in listing(database):
            sys.stdout.write(json.dumps(row) + "\n")


@vault_app.command("hold")
def vault_hold(
    evidence_id: int,
    reason: Annotated[str, typer.Argument(help="Case or order reference.")],
    actor: Actor,
    db: DbOption = None,
) -> None:
    """Put evidence on legal hold: kept past its retention until released."""
    from childshield.vault.store import hold

    with _database(db) as database:
        hold(database, evidence_id, reason, actor=actor)


@vault_app.command("release")
def vault_release(evidence_id: int, actor: Actor, db: DbOption = None) -> None:
    """Lift a legal hold."""
    from childshield.vault.store import release

    with _database(db) as database:
        release(database, evidence_id, actor=actor)


@vault_app.command("expire")
def vault_expire(db: DbOption = None) -> None:
    """Delete evidence past its retention and not on hold (a tombstone with the hashes stays)."""
    from childshield.vault.store import expire

    with _database(db) as database:
        err.print(f"deleted {expire(database, actor='cli')}")


@vault_app.command("export")
def vault_export(
    evidence_ids: Annotated[list[int] | None, typer.Argument(help="Evidence ids.")] = None,
    *,
    report: Annotated[
        list[int] | None,
        typer.Option("--report", help="Include a report (its documents and its evidence); repeatable."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="The bundle to write (.zip; must not exist).")],
    signing_key: Annotated[Path, typer.Option("--signing-key", help="Ed25519 private key (vault keygen).")],
    actor: Actor,
    purpose: Annotated[str, typer.Option(help="Why (a case, a request); recorded.")],
    recipient: Annotated[str, typer.Option(help="Who receives it; recorded.")] = "",
    key_file: KeyFileOption = None,
    db: DbOption = None,
) -> None:
    """A signed bundle (manifest of hashes and metadata, the media, the reports, the signature) for law
    enforcement."""
    from childshield.reporting.attachments import for_bundle
    from childshield.reporting.config import load_config
    from childshield.takedown.settings import notice_settings
    from childshield.vault.bundle import export_bundle

    if not evidence_ids and not report:
        raise typer.BadParameter("name evidence ids or --report")
    keyring = _keyring(key_file)
    with _database(db) as database:
        try:
            ids, reports = list(evidence_ids or ()), []
            config = load_config()
            for report_id in report or ():
                destination = config.destinations.get(_destination_of(database, report_id) or "")
                covered, bundled = for_bundle(
                    database,
                    report_id,
                    prefix=notice_settings().reference_prefix,
                    hash_sharing_mou=destination is not None and destination.hash_sharing_mou,
                )
                ids += covered
                reports.append(bundled)
            digest = export_bundle(
                database,
                keyring,
                ids,
                out,
                signing_key,
                actor=actor,
                purpose=purpose,
                recipient=recipient,
                reports=reports,
            )
        except FileExistsError as exc:  # the bundle exists (errors of the tree are answered at the root)
            say(str(exc), style="red")
            raise typer.Exit(1) from None
    err.print(f"wrote {out} (manifest SHA-256 {digest})")


def _destination_of(db: object, report_id: int) -> str | None:
    from childshield.store.db import Database
    from childshield.store.models import Report

    assert isinstance(db, Database)
    with db.session() as session:
        report = session.get(Report, report_id)
        return report.destination if report is not None else None


@vault_app.command("verify")
def vault_verify(
    bundle: Annotated[Path, typer.Argument(help="The bundle (.zip).")],
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="The sender's public key, as you received it from them."),
    ] = None,
) -> None:
    """Check a bundle: its signature, every file's hash, nothing added.  Exit status 0 when it verifies."""
    from childshield.vault.bundle import BundleError, read_public_key, verify_bundle

    try:
        result = verify_bundle(bundle, read_public_key(public_key) if public_key else None)
    except BundleError as exc:  # one line, whatever the bundle's names hold (no markup, no wrapping)
        say(str(exc), label="does not verify:", style="red")
        raise typer.Exit(1) from None
    except OSError as exc:
        say(str(exc), label="cannot read:", style="red")
        raise typer.Exit(1) from None
    sys.stdout.write(
        f"verified: {result.evidence} pieces of evidence, {result.reports} reports, "
        f"signed by {result.signer}\n"
    )
    if not result.identity_checked:
        say(
            "intact, but the signer is unchecked: give --public-key as received from the sender",
            style="yellow",
        )
