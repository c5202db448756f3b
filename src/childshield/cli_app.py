"""The Typer application class of every ``childshield`` command group: help that reads as written.

Typer's Rich help reads help text as markup (``[auto].enabled`` lost its ``[auto]``), shows a
``<bool>`` type on flags, which take no value, and prints docstrings' reST literals with their double
backticks.  Commands and groups made by :class:`App` show help text as written, a literal in single
backticks (as in the docs), and no type on flags.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup
from typer.models import CommandFunctionType

from childshield.cli_errors import answered

_RST_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)


def help_text(text: str | None) -> str | None:
    """Help as written: paragraphs reflowed to the terminal (a docstring's line breaks are the source's),
    reST literals in single backticks, brackets never read as Rich markup."""
    if text is None:
        return None
    paragraphs = inspect.cleandoc(text).split("\n\n")
    # Click's "\b" keeps a paragraph's lines as they are.
    flowed = [p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs]
    return escape(_RST_LITERAL.sub(r"`\1`", "\n\n".join(flowed)))


class _ReadableHelp:
    """For a command or a group: clean help text, no value type on flags."""

    help: str | None
    short_help: str | None
    params: list[Any]

    def _clean_help(self) -> None:
        self.help = help_text(self.help)
        self.short_help = help_text(self.short_help)
        for param in self.params:
            if hasattr(param, "help"):
                param.help = help_text(param.help)

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            # Rich help shows an option's metavar as its type: a flag takes no value, so it has none.
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class Command(_ReadableHelp, TyperCommand):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clean_help()


class Group(_ReadableHelp, TyperGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clean_help()

    def invoke(self, ctx: Any) -> Any:
        """At the root: an error of the tree is answered once, as ``cli_errors`` says."""
        if ctx.parent is not None:
            return super().invoke(ctx)
        with answered():
            return super().invoke(ctx)


class App(typer.Typer):
    """A command group whose commands (and sub-groups) are :class:`Command` and :class:`Group`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("cls", Group)
        kwargs.setdefault("add_completion", False)  # only the root offers shell completion
        kwargs.setdefault("pretty_exceptions_enable", False)
        super().__init__(*args, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[CommandFunctionType], CommandFunctionType]:
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)
