"""Hash-list file formats: parse rows with line numbers, never half-silently; write them back.

CSV: ``signal_type,signal[,external_id,labels]`` with an optional header row; labels are separated by
``;``.  JSONL: one object per line with ``signal_type``, ``signal`` and optional ``external_id`` and
``labels`` (a list, or a ``;``-separated string).  A row of type ``vpdq`` is a whole video: its signal
is the ``threatexchange`` package's vPDQ string (a JSON list of ``pdq,quality,seconds``).
"""

from __future__ import annotations

import csv
import enum
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from childshield.csvcells import SafeWriter, restore
from childshield.signals import cryptographic, pdq, vpdq
from childshield.store.models import SignalType

MAX_FIELD = 1000
MAX_VIDEO_FIELD = 64 << 20
"""A ``vpdq`` row's signal holds a whole video (about 75 characters a frame)."""
VPDQ = "vpdq"


class ListFormat(enum.StrEnum):
    CSV = "csv"
    JSONL = "jsonl"
    TXFILE = "txfile"
    """The ``threatexchange`` package's file exchange: ``<signal_type> <signal>`` per line (or a bare
    signal, with the type given separately)."""


# threatexchange names the file MD5 of its "video_md5" type; ours is the MD5 of any file.
_TX_NAMES_IN = {"video_md5": "md5"}
_TX_NAMES_OUT = {"md5": "video_md5"}


def from_tx_name(name: str) -> str:
    """Our signal type for a ``threatexchange`` signal type name (``video_md5`` is our ``md5``)."""
    key = name.strip().lower()
    return _TX_NAMES_IN.get(key, key)


@dataclass(frozen=True, slots=True)
class SignalRow:
    line: int
    signal_type: SignalType
    signal: str
    external_id: str | None = None
    labels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str


@dataclass(frozen=True, slots=True)
class VideoRow:
    """A video known by its vPDQ signal, as one row of a list."""

    line: int
    frames: tuple[vpdq.FrameSignal, ...]
    external_id: str | None = None
    labels: tuple[str, ...] = ()


@dataclass
class Parsed:
    rows: list[SignalRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    videos: list[VideoRow] = field(default_factory=list)


def _is_video(signal_type: Any) -> bool:
    return isinstance(signal_type, str) and signal_type.strip().lower() == VPDQ


def _video(line: int, signal: Any, external_id: Any, labels: Any) -> VideoRow:
    if not isinstance(signal, str):
        raise ValueError("signal must be text")
    try:
        frames = vpdq.from_compact_json(signal)
    except vpdq.VpdqFormatError as exc:
        raise ValueError(f"vpdq: {exc}") from None
    ext = None if external_id in (None, "") else str(external_id)
    if ext is not None and len(ext) > 200:
        raise ValueError("external_id is longer than 200 characters")
    return VideoRow(line, tuple(frames), ext, _labels(labels))


def _add(parsed: Parsed, line: int, signal_type: Any, signal: Any, external_id: Any, labels: Any) -> None:
    """One row into ``parsed``: a signal, a video, or the reason it is neither."""
    try:
        if _is_video(signal_type):
            parsed.videos.append(_video(line, signal, external_id, labels))
        else:
            parsed.rows.append(_row(line, signal_type, signal, external_id, labels))
    except ValueError as exc:
        parsed.errors.append(RowError(line, str(exc)))


def normalize_signal(signal_type: str, value: str) -> tuple[SignalType, str]:
    """Validated (type, lowercase hex); raises ValueError with a short reason."""
    try:
        kind = SignalType(signal_type.strip().lower())
    except ValueError:
        raise ValueError(f"unknown signal type {signal_type[:40]!r}") from None
    if kind is SignalType.PDQ:
        return kind, pdq.normalize_hex(value)
    return kind, cryptographic.normalize_hex(kind.value, value)


MAX_LABELS = 50
MAX_LABEL_LENGTH = 200


def _labels(raw: Any) -> tuple[str, ...]:
    if raw is None or raw == "":
        return ()
    items = raw if isinstance(raw, list) else str(raw).split(";")
    out = tuple(str(x).strip() for x in items if str(x).strip())
    if any(len(x) > MAX_LABEL_LENGTH for x in out) or len(out) > MAX_LABELS:
        raise ValueError("too many or too long labels (at most 50, 200 characters each)")
    return out


def _row(line: int, signal_type: Any, signal: Any, external_id: Any, labels: Any) -> SignalRow:
    if not isinstance(signal_type, str) or not isinstance(signal, str):
        raise ValueError("signal_type and signal must be text")
    kind, value = normalize_signal(signal_type, signal)
    ext = None if external_id in (None, "") else str(external_id)
    if ext is not None and len(ext) > 200:
        raise ValueError("external_id is longer than 200 characters")
    return SignalRow(line, kind, value, ext, _labels(labels))


def parse_csv(lines: Iterable[str]) -> Parsed:
    parsed = Parsed()
    csv.field_size_limit(max(csv.field_size_limit(), MAX_VIDEO_FIELD))  # a vpdq row holds a video
    reader = csv.reader(lines)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a stray carriage return inside a field
            parsed.errors.append(RowError(reader.line_num, f"malformed CSV ({exc})"))
            continue
        number = reader.line_num
        cells = [restore(c) for c in cells]  # undo what our own export escaped (csvcells)
        if not cells or all(not c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        if number == 1 and cells[0].strip().lower() == "signal_type":
            continue  # header
        if len(cells) < 2 or len(cells) > 4:
            parsed.errors.append(RowError(number, f"expected 2 to 4 columns, got {len(cells)}"))
            continue
        long = [c for k, c in enumerate(cells) if len(c) > MAX_FIELD and not (k == 1 and _is_video(cells[0]))]
        if long:
            parsed.errors.append(RowError(number, "a field is longer than 1000 characters"))
            continue
        padded = [*cells, "", ""][:4]
        _add(parsed, number, padded[0], padded[1], padded[2].strip(), padded[3])
    return parsed


def parse_jsonl(lines: Iterable[str]) -> Parsed:
    parsed = Parsed()
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            parsed.errors.append(RowError(number, f"not JSON ({exc.msg})"))
            continue
        if not isinstance(obj, dict):
            parsed.errors.append(RowError(number, "expected a JSON object"))
            continue
        _add(
            parsed,
            number,
            obj.get("signal_type"),
            obj.get("signal"),
            obj.get("external_id"),
            obj.get("labels"),
        )
    return parsed


def parse_txfile(lines: Iterable[str], default_type: str | None = None) -> Parsed:
    parsed = Parsed()
    for number, text in enumerate(lines, start=1):
        line = text.strip()
        if not line or line.startswith("#"):
            continue
        kind, _, signal = line.partition(" ") if default_type is None else (default_type, "", line)
        kind = from_tx_name(kind)
        if not signal.strip():
            parsed.errors.append(
                RowError(number, "expected '<signal_type> <signal>' (or give the signal type)")
            )
            continue
        _add(parsed, number, kind, signal.strip(), None, None)
    return parsed


def parse(stream: TextIO, fmt: ListFormat, *, default_type: str | None = None) -> Parsed:
    if fmt is ListFormat.TXFILE:
        return parse_txfile(stream, default_type)
    return parse_csv(stream) if fmt is ListFormat.CSV else parse_jsonl(stream)


def detect_format(name: str) -> ListFormat:
    lower = name.lower()
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return ListFormat.JSONL
    if lower.endswith(".txt"):
        return ListFormat.TXFILE
    return ListFormat.CSV


def write(rows: Iterable[dict[str, Any]], stream: TextIO, fmt: ListFormat) -> int:
    count = 0
    if fmt is ListFormat.TXFILE:
        for row in rows:
            stream.write(f"{_TX_NAMES_OUT.get(row['signal_type'], row['signal_type'])} {row['signal']}\n")
            count += 1
        return count
    if fmt is ListFormat.CSV:
        writer = SafeWriter(stream)  # external ids and labels can read as formulas: see csvcells
        writer.writerow(["signal_type", "signal", "external_id", "labels"])
        for row in rows:
            writer.writerow(
                [row["signal_type"], row["signal"], row.get("external_id") or "", ";".join(row["labels"])]
            )
            count += 1
        return count
    for row in rows:
        stream.write(json.dumps(row, separators=(",", ":")) + "\n")
        count += 1
    return count


def iter_text(data: bytes) -> Iterator[str]:
    """Lines of an uploaded list, decoded as UTF-8 (BOM tolerated)."""
    yield from io.StringIO(data.decode("utf-8-sig"))
