"""CSV cells that a spreadsheet will not run: every CSV childshield writes goes through here.

A cell starting with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return, which some spreadsheets
skip before looking) is taken for a formula by Excel, LibreOffice and Google Sheets when the file is
opened: a file name or a label such as ``=HYPERLINK("http://…","click")`` would become a live link or
worse (CSV injection, per OWASP).  Such text cells are written with a leading apostrophe, which
spreadsheets show as text and do not display.

The escape is reversible, so a hash list exported and imported again keeps its values: a text cell is
escaped when it is apostrophes followed by one of those characters, and :func:`restore` takes one leading
apostrophe off exactly such cells (``'=x`` → ``=x``, ``''=x`` → ``'=x``; ``'abc`` stays as it is).
Numbers are written as numbers: only text is escaped, so a negative distance stays ``-1``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any, TextIO

_FORMULA = re.compile(r"'*[=+\-@\t\r]")
_ESCAPED = re.compile(r"'+[=+\-@\t\r]")


def neutral(value: Any) -> Any:
    """``value`` as it may go in a CSV cell: text a spreadsheet would run gets a leading apostrophe."""
    if isinstance(value, str) and _FORMULA.match(value):
        return "'" + value
    return value


def restore(cell: str) -> str:
    """A cell written by :func:`neutral`, back to the value it was (other cells as they are)."""
    return cell[1:] if _ESCAPED.match(cell) else cell


class SafeWriter:
    """``csv.writer`` with every cell through :func:`neutral`."""

    def __init__(self, stream: TextIO, **options: Any) -> None:
        self._writer = csv.writer(stream, **{"lineterminator": "\n", **options})

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([neutral(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


class SafeDictWriter:
    """``csv.DictWriter`` with every value through :func:`neutral`."""

    def __init__(self, stream: TextIO, fieldnames: Collection[str], **options: Any) -> None:
        self._writer = csv.DictWriter(stream, fieldnames, **{"lineterminator": "\n", **options})

    def writeheader(self) -> None:
        self._writer.writeheader()

    def writerow(self, rowdict: Mapping[str, Any]) -> None:
        self._writer.writerow({k: neutral(v) for k, v in rowdict.items()})

    def writerows(self, rowdicts: Iterable[Mapping[str, Any]]) -> None:
        for row in rowdicts:
            self.writerow(row)
