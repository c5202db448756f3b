"""The Typer application class of every ``childshield`` command group: help that reads as written.

Typer's Rich help reads help text as markup (``[auto].enabled`` lost its ``[auto]``), shows a
``<bool>`` type on flags, which take no value, and prints docstrings' reST literals with their double
backticks.  Commands and groups made by :class:`App` show help text as written, a literal in single
backticks (as in the docs), and no type on flags.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import typer
from typer import _click
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
    cleaned = _RST_LITERAL.sub(r"`\1`", "\n\n".join(flowed))
    if "[" not in cleaned:  # nothing Rich could read as markup (and `--version` needs no Rich)
        return cleaned
    from rich.markup import escape

    return escape(cleaned)


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


@dataclass(frozen=True)
class LazyCommand:
    """A command, or a group of them, named where it is registered and imported only when needed."""

    module: str
    attribute: str  # an :class:`App` (a group of commands) or a command function
    summary: str  # the line shown in the parent group's help: the first paragraph of the command's help

    def load(self, name: str) -> _click.Command:
        """Import the module and build the command as Typer does when it is registered directly."""
        import typer.main

        target = getattr(importlib.import_module(self.module), self.attribute)
        holder = App()
        if isinstance(target, typer.Typer):
            holder.add_typer(target, name=name)
        else:
            holder.command(name)(target)
        return typer.main.get_group(holder).commands[name]


class LazyGroup(Group):
    """A group whose :attr:`lazy` commands are imported when one runs, when its own help is asked, or
    when a shell completes its name: ``childshield --version`` and ``--help`` import none of them.

    The group's help lists each by its :attr:`LazyCommand.summary`, without importing it.
    """

    lazy: ClassVar[Mapping[str, LazyCommand]] = {}
    _listing: bool = False

    def list_commands(self, ctx: Any) -> list[str]:
        names = list(super().list_commands(ctx))
        return names + [name for name in self.lazy if name not in names]

    def get_command(self, ctx: Any, cmd_name: str) -> _click.Command | None:
        found = super().get_command(ctx, cmd_name)
        spec = self.lazy.get(cmd_name)
        if found is not None or spec is None:
            return found
        if self._listing:  # a stand-in that only shows the summary in this group's help
            return Command(name=cmd_name, help=spec.summary)
        command = spec.load(cmd_name)
        self.commands[cmd_name] = command
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def lazy_group(commands: Mapping[str, LazyCommand]) -> type[LazyGroup]:
    """A :class:`LazyGroup` class with these commands, for ``App(cls=...)``."""
    return type("LazyRoot", (LazyGroup,), {"lazy": dict(commands)})
