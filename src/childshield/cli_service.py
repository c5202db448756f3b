"""``childshield serve``, ``account`` and ``audit``: the service and who may use it."""

from __future__ import annotations

import getpass
import json
import os
import sys
from typing import Annotated

import typer

from childshield.cli_app import App
from childshield.cli_bank import DbOption, _database
from childshield.cli_output import add_row, err, print_table, say, table
from childshield.store.models import Role

account_app = App(help="Accounts, roles and API keys of the service.", no_args_is_help=True)
audit_app = App(help="The hash-chained audit log.", no_args_is_help=True)


def serve_command(
    host: Annotated[
        str, typer.Option(help="Address to listen on (behind a reverse proxy: keep 127.0.0.1).")
    ] = ("127.0.0.1"),
    port: Annotated[int, typer.Option(min=0, max=65535, help="0: any free port (logged at start).")] = 8000,
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
    """Run the HTTP API (its OpenAPI document at /openapi.json) and the review UI on the banks' database."""
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
        say(f"{type(exc).__name__}: {str(exc)[:300]}", label="cannot open the database:", style="red")
        raise typer.Exit(1) from None
    from childshield.web.app import run

    run(
        host=host,
        port=port,
        workers=workers,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
        log_level=log_level,
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
    from childshield.accounts.service import create_user

    with _database(db, create=True) as database:
        create_user(
            database,
            name,
            role,
            password=_password(password, role is not Role.SERVICE),
            actor=_actor(),
        )
    say(f"account {name!r} ({role.value}) created")


def _actor() -> str:
    """Who made a change from the command line, for the audit log: the operating system's user."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no name for this uid (a container): the uid itself
        return f"cli:uid {os.getuid()}"


@account_app.command("list")
def account_list(db: DbOption = None) -> None:
    """Every account: role, whether disabled, API keys and sessions (JSON Lines when piped)."""
    from childshield.accounts.service import list_users

    with _database(db) as database:
        users = list_users(database)
    if not sys.stdout.isatty():
        for u in users:
            sys.stdout.write(json.dumps(u) + "\n")
        return
    columns = ("name", "role", "disabled", "password", "api_keys", "sessions", "created_at")
    grid = table("name", "role", "disabled", "password", "API keys", "sessions", "created")
    for u in users:
        add_row(grid, *(str(u[k]) for k in columns))
    print_table(grid)


@account_app.command("disable")
def account_disable(name: str, db: DbOption = None) -> None:
    """Disable an account: it cannot sign in, and its sessions and API keys stop working at once."""
    _set_disabled(name, True, db)


@account_app.command("enable")
def account_enable(name: str, db: DbOption = None) -> None:
    """Enable a disabled account again (its unrevoked API keys work again; it signs in anew)."""
    _set_disabled(name, False, db)


def _set_disabled(name: str, disabled: bool, db: str | None) -> None:
    from childshield.accounts.service import set_disabled

    with _database(db) as database:
        changed = set_disabled(database, name, disabled, actor=_actor())
    state = "disabled" if disabled else "enabled"
    err.print(
        f"account {name!r} {state}" if changed else f"account {name!r} was {state} already",
        markup=False,
        highlight=False,
    )


@account_app.command("password")
def account_password(name: str, db: DbOption = None) -> None:
    """Set a new password (prompted twice, or one line read from standard input; never an argument):
    the account's sessions end."""
    from childshield.accounts.service import set_password

    with _database(db) as database:
        password = _password(None, True)
        if password is None:
            err.print("error: no password given (type it at the prompt, or pipe one line)", markup=False)
            raise typer.Exit(1)
        ended = set_password(database, name, password, actor=_actor())
    err.print(f"password of {name!r} changed; {ended} session(s) ended", markup=False, highlight=False)


@account_app.command("role")
def account_role(
    name: str,
    role: Annotated[Role, typer.Argument(help="admin, senior, reviewer, service, custodian.")],
    db: DbOption = None,
) -> None:
    """Give an account another role (effective on its next request).  Making it a service account
    removes its password and ends its sessions."""
    from childshield.accounts.service import set_role

    with _database(db) as database:
        changed = set_role(database, name, role, actor=_actor())
    said = f"account {name!r} is now {role.value}" if changed else f"account {name!r} is {role.value} already"
    err.print(said, markup=False, highlight=False)


@account_app.command("keys")
def account_keys(name: str, db: DbOption = None) -> None:
    """An account's API keys (prefixes and labels, revoked ones too; JSON Lines when piped)."""
    from childshield.accounts.service import api_keys

    with _database(db) as database:
        keys = api_keys(database, name)
    rows = [
        {
            "prefix": k.prefix,
            "label": k.label,
            "created_at": k.created_at.isoformat(),
            "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None,
            "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
        }
        for k in keys
    ]
    if not sys.stdout.isatty():
        for row in rows:
            sys.stdout.write(json.dumps(row) + "\n")
        return
    grid = table("prefix", "label", "created", "last used", "revoked")
    for row in rows:
        add_row(grid, *(str(row[k] or "") for k in row))
    print_table(grid)


@account_app.command("key")
def account_key(
    name: str, label: Annotated[str, typer.Option(help="What the key is for.")] = "", db: DbOption = None
) -> None:
    """Create an API key for an account and print it (the only time it is shown)."""
    from childshield.accounts.service import create_api_key

    with _database(db) as database:
        key = create_api_key(database, name, label=label, actor=_actor())
    sys.stdout.write(key + "\n")


@account_app.command("revoke")
def account_revoke(
    prefix: Annotated[str, typer.Argument(help="The key's prefix (cs_PREFIX_...).")], db: DbOption = None
) -> None:
    from childshield.accounts.service import revoke_api_key

    with _database(db) as database:
        revoke_api_key(database, prefix.removeprefix("cs_").split("_")[0], actor=_actor())
    err.print("revoked")


@audit_app.command("verify")
def audit_verify(db: DbOption = None) -> None:
    """Check the whole chain; prints the record count and the head hash (keep it to detect truncation)."""
    from childshield.audit.log import verify_chain

    with _database(db) as database:
        count, head = verify_chain(database)
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
