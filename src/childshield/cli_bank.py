"""`childshield bank ...`: thin commands over childshield.banks."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from childshield.banks import (
    BankInfo,
    create_bank,
    delete_bank,
    get_bank,
    list_banks,
    rename_bank,
    update_bank,
)
from childshield.banks.entries import ImportReport, add_outcomes, export_rows, import_rows, set_entry_state
from childshield.banks.formats import ListFormat, detect_format, parse, write
from childshield.cli_app import App
from childshield.cli_output import RowFormat, add_row, print_table, progress_bar, say, table
from childshield.store.db import ENV_VAR, Database, DatabaseMissing, open_database
from childshield.store.models import BankKind, EntryState

bank_app = App(
    help="Banks of known hashes: create, list, show, configure, rename, delete.", no_args_is_help=True
)

DbOption = Annotated[
    str | None,
    typer.Option("--db", envvar=ENV_VAR, help="Database URL. Default: SQLite in the user's data folder."),
]


CREATE_ENV = "CHILDSHIELD_CREATE_DB"
creating = {"db": False}
"""Set by ``childshield --create-db``: any command may create its database (else only the commands
that start one: ``bank create``, ``account add``, ``crawl add``)."""


@contextmanager
def _database(url: str | None, *, create: bool = False) -> Iterator[Database]:
    """The database, opened for a command.  A SQLite file that does not exist is refused unless this
    command starts a database (``create``) or ``--create-db`` / ``$CHILDSHIELD_CREATE_DB`` says so: a
    mistyped path must never create an empty database and scan clean."""
    allowed = create or creating["db"] or os.environ.get(CREATE_ENV, "").lower() in ("1", "true", "yes")
    try:
        db = open_database(url, create=allowed)
    except DatabaseMissing as exc:
        say(
            f"cannot open the database: {exc}. Check the path (--db, ${ENV_VAR}); start one with "
            "`childshield bank create NAME`, or pass --create-db."
        )
        raise typer.Exit(1) from None
    except Exception as exc:  # a bad URL or an unreachable server: say so, no traceback
        say(f"cannot open the database: {type(exc).__name__}: {str(exc)[:300]}")
        raise typer.Exit(1) from None
    try:
        yield db  # an error of the tree raised here is answered at the root (cli_errors)
    finally:
        db.close()


def _print(banks: list[BankInfo], fmt: RowFormat | None) -> None:
    fmt = fmt or (RowFormat.TABLE if sys.stdout.isatty() else RowFormat.JSONL)
    if fmt is RowFormat.JSONL:
        for bank in banks:
            sys.stdout.write(json.dumps(bank.as_dict()) + "\n")
        return
    if fmt is RowFormat.CSV:
        from childshield.csvcells import SafeWriter

        writer = SafeWriter(sys.stdout)
        writer.writerow(
            ["name", "kind", "enabled", "pdq_threshold", "active", "disputed", "disabled", "variants"]
        )
        for b in banks:
            e = b.entries
            writer.writerow(
                [
                    b.name,
                    b.kind.value,
                    b.enabled,
                    b.thresholds.get("pdq"),
                    e["active"],
                    e["disputed"],
                    e["disabled"],
                    b.variants,
                ]
            )
        return
    counts = ("active", "disputed", "disabled", "variants")
    grid = table("name", "kind", "enabled", "pdq threshold", *counts, "description", right=counts)
    for b in banks:
        e = b.entries
        add_row(
            grid,
            b.name,
            b.kind.value,
            "yes" if b.enabled else "no",
            str(b.thresholds.get("pdq", "")),
            str(e["active"]),
            str(e["disputed"]),
            str(e["disabled"]),
            str(b.variants),
            b.description,
        )
    print_table(grid)


FpsOption = Annotated[
    float,
    typer.Option(
        "--fps",
        min=0,
        max=60,
        help="Video frames hashed per second, plus scene changes (1: vPDQ's convention; 30 or 60 takes "
        "every frame of most videos, so copies re-encoded at other moments still match frame for frame).",
    ),
]


def _bank_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of a bank's name, from the database the command line names (if it exists)."""
    url = ctx.params.get("db") or os.environ.get(ENV_VAR)
    try:
        db = open_database(url, create=False, migrate=False)
    except Exception:  # no database (yet), or not reachable: nothing to offer
        return []
    try:
        return [b.name for b in list_banks(db) if b.name.startswith(incomplete)]
    except Exception:
        return []
    finally:
        db.close()


ProgressOption = Annotated[
    bool | None,
    typer.Option("--progress/--no-progress", help="Progress bars on standard error. Default: on a terminal."),
]
BankArgument = Annotated[str, typer.Argument(help="The bank's name.", autocompletion=_bank_names)]
FormatOption = Annotated[RowFormat | None, typer.Option("--format", "-f", help="table, jsonl or csv.")]
QueryVariantsOption = Annotated[
    bool | None,
    typer.Option(
        "--query-variants/--no-query-variants",
        help="Match queries' own variants (turned back, borders trimmed) here. Default: on.",
    ),
]
BankVariantsOption = Annotated[
    bool | None,
    typer.Option(
        "--bank-variants/--no-bank-variants",
        help="'bank add' stores hashes of crops and small rotations of each item. Default: on.",
    ),
]
VariantThresholdOption = Annotated[
    int | None, typer.Option(help="PDQ distance for matches through variants (default 31).")
]


PolicyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--policy",
        help="Policy setting KEY=VALUE (repeatable): action, flood_limit, flood_quarantine, "
        'label_actions={"A1": "block"}, ...',
    ),
]


def _policy(
    query: bool | None, bank: bool | None, threshold: int | None, pairs: list[str] | None = None
) -> dict[str, object]:
    given: dict[str, object | None] = {
        "query_variants": query,
        "bank_variants": bank,
        "variant_threshold": threshold,
    }
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"--policy takes KEY=VALUE, got {pair[:80]!r}")
        value: object = text.strip()
        if text.strip().lower() in ("true", "yes", "on", "false", "no", "off"):
            value = text.strip().lower() in ("true", "yes", "on")
        elif text.strip().lstrip("-").isdigit():
            value = int(text.strip())
        elif text.strip().startswith("{"):  # a mapping, e.g. label_actions={"A1": "block"}
            try:
                value = json.loads(text)
            except ValueError:
                raise typer.BadParameter(f"{key.strip()}: not valid JSON: {text[:80]!r}") from None
        given[key.strip()] = value
    return {k: v for k, v in given.items() if v is not None}


@bank_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Bank name: letters, digits, '_', '.', '-'.")],
    negative: Annotated[
        bool, typer.Option("--negative", help="An allow-list: its matches suppress matches in other banks.")
    ] = False,
    pdq_threshold: Annotated[int | None, typer.Option(help="PDQ match distance (default 31).")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it switched off.")] = False,
    description: Annotated[str, typer.Option(help="Free text.")] = "",
    query_variants: QueryVariantsOption = None,
    bank_variants: BankVariantsOption = None,
    variant_threshold: VariantThresholdOption = None,
    policy: PolicyOption = None,
    db: DbOption = None,
    output_format: FormatOption = None,
) -> None:
    """Create a bank."""
    thresholds = {"pdq": pdq_threshold} if pdq_threshold is not None else None
    with _database(db, create=True) as database:
        bank = create_bank(
            database,
            name,
            kind=BankKind.NEGATIVE if negative else BankKind.NORMAL,
            enabled=not disabled,
            thresholds=thresholds,
            description=description,
            policy=_policy(query_variants, bank_variants, variant_threshold, policy),
        )
    _print([bank], output_format)


@bank_app.command("list")
def list_command(db: DbOption = None, output_format: FormatOption = None) -> None:
    """List banks with their settings and entry counts."""
    with _database(db) as database:
        banks = list_banks(database)
    _print(banks, output_format)


@bank_app.command("show")
def show(name: BankArgument, db: DbOption = None, output_format: FormatOption = None) -> None:
    """Show one bank."""
    with _database(db) as database:
        bank = get_bank(database, name)
    _print([bank], output_format)


@bank_app.command("set")
def set_command(
    name: BankArgument,
    enable: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Switch matching on or off.")
    ] = None,
    negative: Annotated[
        bool | None, typer.Option("--negative/--normal", help="Make it an allow-list or not.")
    ] = None,
    pdq_threshold: Annotated[int | None, typer.Option(help="PDQ match distance.")] = None,
    description: Annotated[str | None, typer.Option(help="Free text.")] = None,
    query_variants: QueryVariantsOption = None,
    bank_variants: BankVariantsOption = None,
    variant_threshold: VariantThresholdOption = None,
    policy: PolicyOption = None,
    db: DbOption = None,
    output_format: FormatOption = None,
) -> None:
    """Change a bank's settings."""
    kind = None if negative is None else (BankKind.NEGATIVE if negative else BankKind.NORMAL)
    thresholds = {"pdq": pdq_threshold} if pdq_threshold is not None else None
    with _database(db) as database:
        bank = update_bank(
            database,
            name,
            enabled=enable,
            kind=kind,
            thresholds=thresholds,
            description=description,
            policy=_policy(query_variants, bank_variants, variant_threshold, policy),
        )
    _print([bank], output_format)


@bank_app.command("rename")
def rename(
    old: BankArgument,
    new: Annotated[str, typer.Argument(help="Its new name.")],
    db: DbOption = None,
    output_format: FormatOption = None,
) -> None:
    """Rename a bank (its entries and settings stay)."""
    with _database(db) as database:
        bank = rename_bank(database, old, new)
    _print([bank], output_format)


@bank_app.command("delete")
def delete(
    name: BankArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    db: DbOption = None,
) -> None:
    """Delete a bank and all its entries."""
    with _database(db) as database:
        info = get_bank(database, name)
        total = sum(info.entries.values())
        if not yes:
            if not sys.stdin.isatty():
                say("refusing to delete without --yes when not interactive", label="error:", style="red")
                raise typer.Exit(2)
            typer.confirm(f"Delete bank {name!r} and its {total} entries?", abort=True)
        removed = delete_bank(database, name)
    say(f"deleted bank {name!r} and {removed} entries")


def _report(report: ImportReport, what: str) -> None:
    """Say what was added, already present and skipped; exit 1 when rows were skipped."""
    for problem in report.skipped[:20]:
        where = f"line {problem.line}: " if problem.line else ""
        say(f"{where}{problem.message}", label="skipped", style="yellow")
    if len(report.skipped) > 20:
        say(f"... and {len(report.skipped) - 20} more skipped", style="yellow")
    extra = [f"{report.variants} variants" if report.variants else ""]
    extra.append(f"local features of {report.local_features}" if report.local_features else "")
    extra.append(f"{report.video_frames} video frames" if report.video_frames else "")
    variants = f" (with {', '.join(e for e in extra if e)})" if any(extra) else ""
    say(
        f"{what}: {report.added} added{variants}, {report.already_present} already present,"
        f" {len(report.skipped)} skipped"
    )
    if report.skipped:
        raise typer.Exit(1)


@bank_app.command("add")
def add(
    bank: BankArgument,
    paths: Annotated[
        list[str], typer.Argument(help="Image and video files, and folders, to hash into the bank.")
    ],
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="Label for every entry (repeatable).")
    ] = None,
    frames: Annotated[
        bool, typer.Option("--frames", help="Add the PDQ of every frame of animations.")
    ] = False,
    workers: Annotated[int | None, typer.Option("--workers", "-w", min=1, help="Worker processes.")] = None,
    fps: FpsOption = 1.0,
    progress: ProgressOption = None,
    db: DbOption = None,
) -> None:
    """Hash media and store its signals (PDQ, MD5, SHA-1, SHA-256) in a bank; the media is not stored.
    A video is one item: its digests, and the PDQ of its frames (``--fps`` a second) with their times."""
    from childshield.hashing.batch import Skipped, hash_many
    from childshield.hashing.discover import discover
    from childshield.hashing.result import HashOutcome
    from childshield.hashing.service import HashOptions
    from childshield.media.video import Sampling

    with _database(db) as database:
        info = get_bank(database, bank)  # fail before hashing anything
        candidates = list(discover(paths))
        options = HashOptions(
            frames=frames,
            bank_variants=info.policy.bank_variants,
            local_features=info.policy.orb_check,
            sampling=Sampling(rate=fps),
        )
        outcomes: list[HashOutcome] = []
        with progress_bar(enabled=progress) as bar:
            hashing = bar.add_task("hashing", total=len(candidates))
            for outcome in hash_many(candidates, options, workers=workers, fork=True):
                bar.update(hashing, advance=1, refresh=True)
                if not isinstance(outcome, Skipped):
                    assert isinstance(outcome, HashOutcome)
                    outcomes.append(outcome)
            bar.add_task("storing", total=None)
            bar.refresh()
            report = add_outcomes(database, bank, outcomes, labels=label or [])
    _report(report, f"bank {bank!r}")


@bank_app.command("import-vpdq")
def import_vpdq(
    bank: BankArgument,
    files: Annotated[list[str], typer.Argument(help="vPDQ text files, one video each.")],
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="Label for every entry (repeatable).")
    ] = None,
    db: DbOption = None,
) -> None:
    """Add videos known by their vPDQ signal (``frame,quality,pdq,seconds`` per line)."""
    from childshield.banks.entries import add_video_signal
    from childshield.signals.vpdq import VpdqFormatError, from_text

    signals = []
    for name in files:
        try:
            with open(name, encoding="utf-8") as f:
                signals.append((name, from_text(f.read(50_000_000))))
        except (OSError, UnicodeDecodeError, VpdqFormatError) as exc:
            say(f"{name}: {exc}", style="red")
            raise typer.Exit(1) from None
    from childshield.banks.errors import BankError

    with _database(db) as database:
        for name, frames in signals:
            try:
                report = add_video_signal(
                    database, bank, frames, source_name=name.rsplit("/", 1)[-1], labels=label or []
                )
            except BankError as exc:
                say(f"{name}: {exc}", style="red")
                raise typer.Exit(1) from None
            _report(report, f"{name} (item {report.item_id})")


@bank_app.command("export-vpdq")
def export_vpdq(
    bank: BankArgument,
    item: Annotated[
        str,
        typer.Argument(
            help="The video: its item id (as matches and import-vpdq report it), or its SHA-256, SHA-1 "
            "or MD5.",
            metavar="ITEM",
        ),
    ],
    db: DbOption = None,
) -> None:
    """Write a banked video's frames as vPDQ text, as Meta's vPDQ tools write and read it (``frame
    number,quality,pdq,seconds`` per line, the frames' own numbers)."""
    from childshield.banks.entries import find_video, video_signal
    from childshield.signals.vpdq import to_text

    with _database(db) as database:
        item_id = find_video(database, bank, item)
        frames = video_signal(database, bank, item_id) if item_id is not None else []
    if not frames:
        say(f"{bank!r} has no video {item!r} (give its item id, SHA-256, SHA-1 or MD5)")
        raise typer.Exit(1)
    sys.stdout.write(to_text(frames))


@bank_app.command("import")
def import_command(
    bank: BankArgument,
    file: Annotated[
        str | None,
        typer.Argument(
            help="Hash list: CSV (signal_type,signal[,external_id,labels]), JSONL, or threatexchange's"
            " file format (txfile: '<type> <signal>' per line); - for stdin."
        ),
    ] = None,
    list_format: Annotated[
        ListFormat | None, typer.Option("--format", "-f", help="Default: from the file name (CSV).")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Refuse the whole file if any row is malformed.")
    ] = False,
    signal_type: Annotated[
        str | None, typer.Option(help="With --format txfile: the type of lines that hold only a signal.")
    ] = None,
    exchange: Annotated[
        str | None,
        typer.Option(
            help="Instead of a file, fetch a threatexchange exchange: 'sample' (its static exchange)."
        ),
    ] = None,
    progress: ProgressOption = None,
    db: DbOption = None,
) -> None:
    """Import a hash list: atomic, and re-runnable without duplicating entries."""
    if (file is None) == (exchange is None):
        raise typer.BadParameter("give a FILE or --exchange, not both")
    with progress_bar(enabled=progress) as bar:
        reading = bar.add_task("fetching" if exchange is not None else "reading", total=None)
        bar.refresh()
        storing = None

        def stored(done: int, total: int) -> None:
            nonlocal storing
            if storing is None:
                storing = bar.add_task("storing", total=total)
            if done == total:
                bar.add_task("committing", total=None)  # the bank takes the rows in one step
            bar.update(storing, completed=done, refresh=True)

        if exchange is not None:
            from childshield.banks.exchange import fetch_exchange

            with _database(db) as database:
                get_bank(database, bank)
                parsed = fetch_exchange(exchange)
                bar.update(reading, total=1, completed=1, refresh=True)
                report = import_rows(
                    database,
                    bank,
                    parsed,
                    source_name=f"threatexchange:{exchange}",
                    strict=strict,
                    source="exchange",
                    progress=stored,
                )
        else:
            fmt = list_format or detect_format(file or "-")
            try:
                data = sys.stdin.buffer.read() if file in ("-", None) else Path(str(file)).read_bytes()
                parsed = parse(io.StringIO(data.decode("utf-8-sig")), fmt, default_type=signal_type)
            except (OSError, UnicodeDecodeError) as exc:
                say(f"cannot read {file}: {exc}", label="error:", style="red")
                raise typer.Exit(1) from None
            bar.update(reading, total=1, completed=1, refresh=True)
            name = Path(file).name if file not in ("-", None) else "stdin"
            with _database(db) as database:
                report = import_rows(database, bank, parsed, source_name=name, strict=strict, progress=stored)
    _report(report, f"bank {bank!r}")


@bank_app.command("export")
def export_command(
    bank: BankArgument,
    list_format: Annotated[
        ListFormat, typer.Option("--format", "-f", help="csv, jsonl or txfile.")
    ] = ListFormat.CSV,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    all_states: Annotated[bool, typer.Option("--all", help="Include disputed and disabled entries.")] = False,
    db: DbOption = None,
) -> None:
    """Export a bank's entries as a hash list (active ones by default)."""
    states = tuple(EntryState) if all_states else (EntryState.ACTIVE,)
    with _database(db) as database:
        rows = export_rows(database, bank, states=states)
    if output:
        with open(output, "w", encoding="utf-8", newline="") as stream:
            count = write(rows, stream, list_format)
    else:
        count = write(rows, sys.stdout, list_format)
    say(f"exported {count} entries from bank {bank!r}")


@bank_app.command("entry")
def entry_command(
    bank: BankArgument,
    entry_id: Annotated[int, typer.Argument(help="Entry id (see export --format jsonl).")],
    state: Annotated[EntryState, typer.Argument(help="active, disputed or disabled.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (required to dispute or disable).")] = "",
    db: DbOption = None,
) -> None:
    """Change an entry's state: disabled entries stop matching at once."""
    with _database(db) as database:
        set_entry_state(database, bank, entry_id, state, reason)
    say(f"entry {entry_id} of bank {bank!r} is now {state.value}")
