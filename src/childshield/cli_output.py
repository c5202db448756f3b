"""What the command line prints for people: user data (names, paths, messages, cells) as it is.

Rich reads ``[...]`` as markup and ``:name:`` as an emoji code, so ``copy [b]old.jpg`` would print as
``copy old.jpg`` and ``[/x]`` would crash.  Every console of the command line comes from
:func:`console`, with markup, emoji codes and highlighting off: a string is printed exactly.  Styling
is given as a style (``say(..., label="error:", style="red")``) or with :class:`~rich.text.Text`, never
written into the text.  ``tests/test_cli_output.py`` holds every command-line module to this.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

TABLE_WIDTH_OFF_TERMINAL = 220
"""Width of a table written to a file or a pipe: whole hashes on one line."""


class RowFormat(enum.StrEnum):
    """Output of commands that print rows (banks, matches): no vPDQ, which is a video's signal."""

    TABLE = "table"
    JSONL = "jsonl"
    CSV = "csv"


def console(*, stderr: bool = False, width: int | None = None) -> Console:
    """A console that prints strings as they are (no markup, no emoji codes, no highlighting).  On
    standard error a message stays on one line (a terminal wraps it; a log keeps it whole)."""
    return Console(stderr=stderr, width=width, markup=False, emoji=False, highlight=False, soft_wrap=stderr)


err = console(stderr=True)
"""Standard error, for messages to people (Rich finds ``sys.stderr`` at each print)."""


def say(message: str, *, label: str = "", style: str = "", to: Console | None = None) -> None:
    """One message on standard error, on one line.  With ``label`` the label is styled and the message
    plain; else ``style`` is the whole message's."""
    text = Text.assemble((label, style), " ", message) if label else Text(message, style=style)
    (to or err).print(text, soft_wrap=True)


def table(*headers: str, fold: Iterable[str] = (), right: Iterable[str] = ()) -> Table:
    """A table whose cut cells end in an ellipsis; ``fold`` columns (paths, hashes) wrap onto more lines
    instead, so they are never cut; ``right`` columns (counts) are right-aligned."""
    folded, righted = set(fold), set(right)
    grid = Table(header_style="bold")
    for name in headers:
        grid.add_column(
            name,
            overflow="fold" if name in folded else "ellipsis",
            justify="right" if name in righted else "left",
        )
    return grid


def add_row(grid: Table, *cells: str | Text | None) -> None:
    """A row of user data: strings become :class:`Text`, never read as markup whatever prints them."""
    grid.add_row(
        *(cell if isinstance(cell, Text) else Text("" if cell is None else str(cell)) for cell in cells)
    )


def out_console() -> Console:
    """Standard output for a table: the terminal's width, else a wide page."""
    screen = console()
    return screen if screen.is_terminal else console(width=TABLE_WIDTH_OFF_TERMINAL)


def print_table(grid: Table) -> None:
    out_console().print(grid)


def progress_bar(*, enabled: bool | None, rate: bool = False) -> Progress:
    """A progress bar on standard error (each task: its description, a bar, 3/10, time left); by
    default only on a terminal, so that it never mixes with what is written to a file.  Descriptions are
    ours (``hashing``), never user data; ``rate`` adds the task's ``rate`` field.  It draws when told
    (``update(..., refresh=True)``, ``refresh()``): no thread of its own, so that hashing workers can be
    forked (see ``SupervisedPool``)."""
    columns = [TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn()]
    if rate:
        columns.append(TextColumn("{task.fields[rate]}", markup=False))
    return Progress(
        *columns,
        TimeRemainingColumn(),
        console=err,
        disable=not (err.is_terminal if enabled is None else enabled),
        transient=True,
        auto_refresh=False,  # no refresh thread, so hashing workers can be forked: update with refresh=True
    )
