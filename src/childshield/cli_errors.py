"""How the command line answers an error of the tree (``childshield.errors``): one line on standard
error, ``error: MESSAGE`` with the message printed as it is (never read as Rich markup), and the exit
status of the error's category.

Every command group made by :class:`~childshield.cli_app.App` answers through :func:`answered` at its
root, so a command raises and lets this say it; a command catches an error itself only to say more
(which file, which bank of several) or to answer otherwise (a bad parameter, exit status 2).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from childshield.errors import ChildshieldError


def report(error: ChildshieldError) -> int:
    """Say ``error`` on standard error; returns the exit status its category gives."""
    from childshield.cli_output import say  # Rich only once there is something to say (fast start)

    say(str(error) or type(error).__name__, label="error:", style="red")
    return error.exit_code


@contextmanager
def answered() -> Iterator[None]:
    """An error of the tree raised inside becomes its message and exit status (``typer.Exit``)."""
    try:
        yield
    except ChildshieldError as exc:
        raise typer.Exit(report(exc)) from None
