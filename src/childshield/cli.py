"""The ``childshield`` command: thin commands over the services.

Every command lives in its own module, imported only when that command runs, its own ``--help`` is
asked or a shell completes it (:class:`childshield.cli_app.LazyGroup`): ``childshield --version`` and
``--help`` import no NumPy, database, web or image code (docs/benchmarks.md, start-up).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from childshield import __version__
from childshield.cli_app import App, LazyCommand, lazy_group

# name: where the command is and the line the root's --help shows for it (tests/test_cli_output.py checks
# that line against the command's own help).
_COMMANDS: dict[str, LazyCommand] = {
    "hash": LazyCommand(
        "childshield.cli_hash",
        "hash_command",
        "Hash image and video files: MD5, SHA-1, SHA-256 and PDQ (with quality); for videos the PDQ of "
        "each sampled frame with its time (`--frames` lists them; `--format vpdq` writes vPDQ text).",
    ),
    "match": LazyCommand(
        "childshield.cli_match",
        "match_command",
        "Match hashes against every enabled bank. Exit status: 0 no match, 3 matched, 1 error, 2 usage.",
    ),
    "scan": LazyCommand(
        "childshield.cli_scan",
        "scan_command",
        "Hash files and match them against every enabled bank; print the matches (and, for videos, the "
        "banked videos that came near: `near`, not matches).",
    ),
    "watch": LazyCommand(
        "childshield.cli_watch",
        "watch_command",
        "Watch streams until they end (files), Ctrl-C, or SIGTERM: alerts are printed as JSON Lines and "
        "recorded as decisions (with their webhooks when CHILDSHIELD_WEBHOOK_URL is set). Exit status 3 "
        "when anything matched.",
    ),
    "serve": LazyCommand(
        "childshield.cli_service",
        "serve_command",
        "Run the HTTP API (its OpenAPI document at /openapi.json) and the review UI on the banks' database.",
    ),
    "bank": LazyCommand(
        "childshield.cli_bank",
        "bank_app",
        "Banks of known hashes: create, list, show, configure, rename, delete.",
    ),
    "account": LazyCommand(
        "childshield.cli_service", "account_app", "Accounts, roles and API keys of the service."
    ),
    "audit": LazyCommand("childshield.cli_service", "audit_app", "The hash-chained audit log."),
    "review": LazyCommand(
        "childshield.cli_review",
        "review_app",
        "The human review queue (reviewers work in the web UI of `serve`).",
    ),
    "media": LazyCommand(
        "childshield.cli_review",
        "media_app",
        "Uploads kept (sealed) for review: keys, re-sealing, retention.",
    ),
    "crawl": LazyCommand(
        "childshield.cli_crawl", "crawl_app", "Crawl reported URLs for known material (hotline work)."
    ),
    "takedown": LazyCommand(
        "childshield.cli_takedown",
        "takedown_app",
        "Notice and takedown: providers, notices, re-checks, removal figures.",
    ),
    "vault": LazyCommand(
        "childshield.cli_vault",
        "vault_app",
        "Evidence: preserve, hold, export signed bundles, verify them.",
    ),
    "report": LazyCommand(
        "childshield.cli_report",
        "report_app",
        "Reports to NCMEC's CyberTipline and other destinations (queue, auto, send, list, show, status, "
        "schema).",
    ),
}

app = App(
    cls=lazy_group(_COMMANDS),
    help="childshield: find known abuse material by hash, report it, and get it removed.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion, --show-completion (docs/cli.md)
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"childshield {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    create_db: Annotated[
        bool,
        typer.Option(
            "--create-db",
            help="Let this command create its database if it does not exist (else only `bank create`, "
            "`account add` and `crawl add` do: a mistyped path is refused, never scanned clean).",
        ),
    ] = False,
) -> None:
    """childshield command line."""
    if create_db:  # imported only then: `hash` needs no database code
        from childshield.cli_bank import creating

        creating["db"] = True


def main() -> None:
    app(prog_name="childshield")


if __name__ == "__main__":  # pragma: no cover
    main()


__all__ = ["Path", "app", "main"]
