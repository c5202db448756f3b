"""Render hash outcomes as JSON Lines, CSV or a table for people."""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Sequence
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from childshield.csvcells import SafeDictWriter
from childshield.hashing.result import HashOutcome, records
from childshield.signals.pdq import Dihedral
from childshield.signals.vpdq import FrameSignal, to_text

BASE_FIELDS = (
    "path",
    "size_bytes",
    "md5",
    "sha1",
    "sha256",
    "pdq",
    "pdq_quality",
    "width",
    "height",
    "format",
)


class OutputFormat(enum.StrEnum):
    TABLE = "table"
    JSONL = "jsonl"
    CSV = "csv"
    VPDQ = "vpdq"
    """vPDQ text of one video (``frame,quality,pdq,seconds`` per frame), exactly as Meta's tools write it."""


class Writer(Protocol):
    def write(self, outcome: HashOutcome) -> None: ...
    def close(self) -> None: ...


class JsonlWriter:
    def __init__(self, stream: TextIO, *, frames: bool, dihedral: bool) -> None:
        self.stream, self.frames, self.dihedral = stream, frames, dihedral

    def write(self, outcome: HashOutcome) -> None:
        for row in records(outcome, frames=self.frames, dihedral=self.dihedral):
            self.stream.write(json.dumps(row, separators=(",", ":")) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


def csv_fields(*, frames: bool, dihedral: bool) -> list[str]:
    fields = list(BASE_FIELDS)
    if frames:
        fields += ["frame", "timestamp"]
    fields += ["frame_count", "duration"]
    if dihedral:
        fields += [f"pdq_{d.value}" for d in Dihedral if d is not Dihedral.ORIGINAL]
    fields.append("error")
    return fields


class CsvWriter:
    def __init__(self, stream: TextIO, *, frames: bool, dihedral: bool) -> None:
        self.stream, self.frames, self.dihedral = stream, frames, dihedral
        self.fields = csv_fields(frames=frames, dihedral=dihedral)
        self.writer = SafeDictWriter(stream, self.fields, extrasaction="ignore")  # paths can be formulas
        self.writer.writeheader()

    def write(self, outcome: HashOutcome) -> None:
        for row in records(outcome, frames=self.frames, dihedral=self.dihedral):
            flat: dict[str, Any] = {k: v for k, v in row.items() if k != "pdq_dihedral"}
            for name, value in (row.get("pdq_dihedral") or {}).items():
                flat[f"pdq_{name}"] = value
            self.writer.writerow(flat)
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


def _size(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


class TableWriter:
    """Collects rows and prints one table at the end: path, size, dimensions, quality, PDQ, SHA-256."""

    def __init__(self, console: Console, *, frames: bool, dihedral: bool) -> None:
        self.console, self.frames, self.dihedral = console, frames, dihedral
        self.rows: list[Sequence[str | Text]] = []

    def write(self, outcome: HashOutcome) -> None:
        for row in records(outcome, frames=self.frames, dihedral=self.dihedral):
            # Text, not str: a path is never read as Rich markup (``copy [b]old.jpg``).
            path = Text(row["path"] + (f" #{row['frame']}" if "frame" in row else ""))
            if "error" in row:
                self.rows.append(
                    (path, _size(row["size_bytes"]), "", "", Text(row["error"], style="red"), "")
                )
                continue
            pdq = row["pdq"] or "(none: image under 5 px)"
            if row.get("pdq_dihedral"):
                pdq += "".join(f"\n{k}: {v}" for k, v in row["pdq_dihedral"].items() if k != "original")
            quality = str(row["pdq_quality"])
            self.rows.append(
                (
                    path,
                    _size(row["size_bytes"]),
                    f"{row['width']}x{row['height']}",
                    Text(quality, style="yellow" if row["pdq_quality"] < 50 else ""),
                    Text(pdq),
                    Text(row["sha256"]),
                )
            )

    def close(self) -> None:
        table = Table(show_lines=False, header_style="bold")
        table.add_column("path", overflow="fold")
        # Hashes and paths fold (never cut); the rest ends in an ellipsis when the terminal is narrow.
        # No minimum widths: a table wider than the terminal would lose its right edge without a mark.
        table.add_column("size", justify="right", no_wrap=True, overflow="ellipsis")
        table.add_column("pixels", justify="right", no_wrap=True, overflow="ellipsis")
        table.add_column("quality", justify="right", no_wrap=True, overflow="ellipsis")
        table.add_column("pdq", overflow="fold")
        table.add_column("sha256", overflow="fold")
        for row in self.rows:
            table.add_row(*row)
        self.console.print(table)


class VpdqWriter:
    """One video's vPDQ text, in the reference format only (Meta's readers refuse anything else, a
    comment line included): ``frame number,quality,pdq,seconds`` per frame; an image is one frame at
    0 s.  A file that could not be hashed is reported on ``errors``, never in the text."""

    def __init__(self, stream: TextIO, errors: TextIO | None = None) -> None:
        self.stream = stream
        self.errors = errors if errors is not None else sys.stderr

    def write(self, outcome: HashOutcome) -> None:
        if outcome.result is None:
            self.errors.write(f"{outcome.path}: error: {outcome.error}\n")
            return
        frames = [
            FrameSignal(f.pdq, f.pdq_quality, f.timestamp or 0.0, f.index)
            for f in outcome.result.frames
            if f.pdq is not None
        ]
        self.stream.write(to_text(frames))
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


def make_writer(
    fmt: OutputFormat, stream: TextIO, console: Console, *, frames: bool, dihedral: bool
) -> Writer:
    if fmt is OutputFormat.JSONL:
        return JsonlWriter(stream, frames=frames, dihedral=dihedral)
    if fmt is OutputFormat.CSV:
        return CsvWriter(stream, frames=frames, dihedral=dihedral)
    if fmt is OutputFormat.VPDQ:
        return VpdqWriter(stream)
    return TableWriter(console, frames=frames, dihedral=dihedral)
