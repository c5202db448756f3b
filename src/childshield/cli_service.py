"""``childshield serve``, ``account`` and ``audit``: the service and who may use it."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from childshield.cli_bank import DbOption, _database
from childshield.store.models import Role

account_app = typer.Typer(help="Accounts, roles and API keys of the service.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
err = Console(stderr=True)


def serve_command(
    host: Annotated[
        str, typer.Option(help="Address to listen on (behind a reverse proxy: keep 127.0.0.1).")
    ] = ("127.0.0.1"),
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="Worker processes.")] = 1,
    db: DbOption = None,
    proxy_headers: Annotated[
        bool, typer.Option(help="Trust X-Forwarded-* from --forwarded-allow-ips (a reverse proxy).")
    ] = True,
    forwarded_allow_ips: Annotated[
        str, typer.Option(help="Proxies trusted for X-Forwarded-*.")
    ] = "127.0.0.1",
    log_level: Annotated[str, typer.Option(help="critical, error, warning, info, debug.")] = "info",
) -> None:
    """Run the HTTP API (OpenAPI at /openapi.json, docs at /docs) on the banks' database."""
    import uvicorn

    from childshield.store.db import ENV_VAR, open_database

    if db:
        os.environ[ENV_VAR] = db  # every worker process reads it
    try:
        open_database(db).close()  # migrate once, before the workers start
        from childshield.web.settings import ServiceSettings

        conf = ServiceSettings()
        if conf.keep_media:  # make the media key file once, before the workers start
            from pathlib import Path

            from childshield.review.keys import Keyring

            Keyring.load(Path(conf.media_key_file) if conf.media_key_file else None)
    except Exception as exc:
        err.print(f"[red]cannot open the database:[/] {type(exc).__name__}: {str(exc)[:300]}")
        raise typer.Exit(1) from None
    uvicorn.run(
        "childshield.web.app:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
        log_level=log_level,
        server_header=False,
    )


def _password(given: str | None, prompt: bool) -> str | None:
    if given is not None:
        return given
    if not prompt:
        return None
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line.rstrip("\n") or None
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


@account_app.command("add")
def account_add(
    name: str,
    role: Annotated[Role, typer.Option(help="admin, senior, reviewer, service, custodian.")] = Role.REVIEWER,
    password: Annotated[
        str | None, typer.Option(help="Else prompted (or read from standard input); none for service.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Create an account.  People get a password; service accounts sign in with API keys only."""
    from childshield.accounts.service import AccountError, create_user

    with _database(db, create=True) as database:
        try:
            create_user(database, name, role, password=_password(password, role is not Role.SERVICE))
        except AccountError as exc:
            err.print(f"[red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from None
    err.print(f"account {name!r} ({role.value}) created", highlight=False)


@account_app.command("list")
def account_list(db: DbOption = None) -> None:
    from childshield.accounts.service import list_users

    with _database(db) as database:
        users = list_users(database)
    if not sys.stdout.isatty():
        for u in users:
            sys.stdout.write(json.dumps(u) + "\n")
        return
    table = Table("name", "role", "disabled", "password", "API keys", "created")
    for u in users:
        table.add_row(
            *(str(u[k]) for k in ("name", "role", "disabled", "password", "api_keys", "created_at"))
        )
    Console().print(table)


@account_app.command("key")
def account_key(
    name: str, label: Annotated[str, typer.Option(help="What the key is for.")] = "", db: DbOption = None
) -> None:
    """Create an API key for an account and print it (the only time it is shown)."""
    from childshield.accounts.service import AccountError, create_api_key

    with _database(db) as database:
        try:
            key = create_api_key(database, name, label=label)
        except AccountError as exc:
            err.print(f"[red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from None
    sys.stdout.write(key + "\n")


@account_app.command("revoke")
def account_revoke(
    prefix: Annotated[str, typer.Argument(help="The key's prefix (cs_PREFIX_...).")], db: DbOption = None
) -> None:
    from childshield.accounts.service import AccountError, revoke_api_key

    with _database(db) as database:
        try:
            revoke_api_key(database, prefix.removeprefix("cs_").split("_")[0])
        except AccountError as exc:
            err.print(f"[red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from None
    err.print("revoked")


@audit_app.command("verify")
def audit_verify(db: DbOption = None) -> None:
    """Check the whole chain; prints the record count and the head hash (keep it to detect truncation)."""
    from childshield.audit.log import ChainBroken, verify_chain

    with _database(db) as database:
        try:
            count, head = verify_chain(database)
        except ChainBroken as exc:
            err.print(f"[red]{exc}[/]", highlight=False)
            raise typer.Exit(1) from None
    sys.stdout.write(f"{count} records, chain intact, head {head}\n")


@audit_app.command("list")
def audit_list(
    since: Annotated[int, typer.Option(help="Records after this sequence number.")] = 0, db: DbOption = None
) -> None:
    """Print records as JSON Lines."""
    from childshield.audit.log import records

    with _database(db) as database:
        for r in records(database, since=since):
            sys.stdout.write(json.dumps(r.as_dict()) + "\n")
