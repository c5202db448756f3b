"""`childshield scan`: hash and match files and folders in one pass."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console

from childshield.cli_bank import DbOption, FpsOption, _database
from childshield.cli_match import EXIT_MATCHED, warn_if_no_banks
from childshield.cli_output import RowFormat, add_row, err, print_table, progress_bar, say, table
from childshield.csvcells import SafeDictWriter
from childshield.hashing.batch import Skipped, hash_many
from childshield.hashing.discover import discover
from childshield.hashing.output import OutputFormat
from childshield.hashing.result import HashOutcome
from childshield.hashing.service import HashOptions
from childshield.matching import Matcher
from childshield.matching.flood import Flood, FloodGuard
from childshield.matching.matcher import DEFAULT_MIN_QUALITY, Match
from childshield.matching.scan import ScanResult, scan_outcome
from childshield.matching.video import VideoMatch
from childshield.media.video import Sampling


def _rows(result: ScanResult) -> list[dict[str, Any]]:
    """One row per match, per suppressed match, and per banked video that came near (frames in common,
    neither share reached: not a match, ``near`` true)."""
    if result.error is not None:
        return [{"path": result.path, "error": result.error}]
    assert result.hashes is not None
    video = {(v.match.bank, v.match.item_id): v for v in result.video}
    listed = [
        *((m, video.get((m.bank, m.item_id)), False, False) for m in result.matches),
        *((m, video.get((m.bank, m.item_id)), True, False) for m in result.suppressed),
        *((v.match, v, False, True) for v in result.near),
    ]
    return [
        {
            "path": result.path,
            "sha256": result.hashes.sha256,
            "pdq": result.hashes.pdq,
            "bank": m.bank,
            "entry_id": m.entry_id,
            "item_id": m.item_id,
            "signal_type": m.signal_type,
            "distance": m.distance,
            "variant": m.variant or None,
            "query_variant": m.query_variant or None,
            "check": m.check or m.signal_type,
            "inliers": m.inliers if m.check == "orb" else None,
            "external_id": m.external_id,
            "source_name": m.source_name,
            **_video_fields(v),
            "suppressed": suppressed,
            "allowed_by": _allowed_by(m),
            "near": near,
        }
        for m, v, suppressed, near in listed
    ]


def _allowed_by(m: Match) -> dict[str, Any] | None:
    """For a suppressed match: the allow-list entry that cleared it."""
    a = m.cleared_by
    if a is None:
        return None
    return {
        "bank": a.bank,
        "entry_id": a.entry_id,
        "signal_type": a.signal_type,
        "distance": a.distance,
        "query_variant": a.query_variant or None,
        "labels": list(a.labels),
    }


def _allowed_text(row: dict[str, Any]) -> str:
    a = row.get("allowed_by")
    return f"{a['bank']} entry {a['entry_id']}" if a else ""


def _video_fields(v: VideoMatch | None) -> dict[str, Any]:
    """For a video: what kind of item matched, from when, and vPDQ's shares."""
    if v is None:
        return {}
    return {
        "kind": v.kind,
        "time": v.first_time,
        "query_share": None if v.query_share is None else round(v.query_share, 1),
        "item_share": None if v.item_share is None else round(v.item_share, 1),
    }


def _at(row: dict[str, Any]) -> str:
    if row.get("time") is None:
        return ""
    shares = f" ({row['query_share']}% / {row['item_share']}%)" if row.get("query_share") is not None else ""
    return f"{row['kind']} at {row['time']:.1f} s{shares}"


def _cleared(row: dict[str, Any]) -> str:
    if row.get("near"):
        return "near, not a match (neither share reached the bank's)"
    if not row.get("suppressed"):
        return ""
    by = _allowed_text(row)
    return f"suppressed by {by}" if by else "suppressed by an allow-list"


def _second(row: dict[str, Any]) -> str:
    return f"orb {row['inliers']} inliers" if row.get("check") == "orb" else ""


def _format(given: str | None) -> OutputFormat | None:
    """The output format named (table, jsonl or csv)."""
    if given is None:
        return None
    if given.strip().lower() == OutputFormat.VPDQ:  # matches are no vPDQ signal: say what is
        say(
            "scan prints matches (table, jsonl or csv); for a video's vPDQ text use "
            "`childshield hash VIDEO --format vpdq`"
        )
        raise typer.Exit(2)
    try:
        return OutputFormat(RowFormat(given.strip().lower()))
    except ValueError:
        raise typer.BadParameter(
            f"{given[:40]!r} is not one of table, jsonl, csv", param_hint="--format"
        ) from None


def scan_command(
    paths: Annotated[list[str], typer.Argument(help="Files and folders to scan (recursively).")],
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            metavar="<table|jsonl|csv>",  # no vpdq: a match is no video signal
            autocompletion=lambda: [f.value for f in RowFormat],
            help="Default: table on a terminal, jsonl otherwise.",
        ),
    ] = None,
    workers: Annotated[int | None, typer.Option("--workers", "-w", min=1, help="Worker processes.")] = None,
    frames: Annotated[bool, typer.Option("--frames", help="Match every frame of animations.")] = False,
    min_quality: Annotated[
        int, typer.Option(min=0, max=100, help="PDQ quality floor.")
    ] = DEFAULT_MIN_QUALITY,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress")] = None,
    fps: FpsOption = 1.0,
    db: DbOption = None,
) -> None:
    """Hash files and match them against every enabled bank; print the matches (and, for videos, the
    banked videos that came near: ``near``, not matches).

    Exit status: 3 when any file matched (even if others failed), else 1 when some files could not be
    scanned, else 0; 2 on bad usage.
    """
    fmt = _format(output_format) or (OutputFormat.TABLE if sys.stdout.isatty() else OutputFormat.JSONL)
    with _database(db) as database:
        matcher = Matcher.load(database, min_quality=min_quality)
        warn_if_no_banks(matcher)
        _scan(matcher, paths, fmt, err, workers=workers, frames=frames, progress=progress, fps=fps)


FLUSH_EVERY = 200  # files between writes of the match tallies (flood protection)


def _report_floods(floods: list[Flood], err: Console) -> None:
    for flood in floods:
        say(flood.describe(), label="flood:", style="yellow", to=err)


def _scan(
    matcher: Matcher,
    paths: list[str],
    fmt: OutputFormat,
    err: Console,
    *,
    workers: int | None,
    frames: bool,
    progress: bool | None,
    fps: float = 1.0,
) -> None:
    candidates = list(discover(paths))
    guard = FloodGuard(matcher.db)
    started = time.monotonic()
    files = matched = errors = 0
    table_rows: list[dict[str, Any]] = []
    writer = SafeDictWriter(  # paths, external ids and errors can read as spreadsheet formulas
        sys.stdout,
        [
            "path",
            "sha256",
            "pdq",
            "bank",
            "entry_id",
            "item_id",
            "signal_type",
            "distance",
            "variant",
            "query_variant",
            "check",
            "inliers",
            "external_id",
            "source_name",
            "kind",
            "time",
            "query_share",
            "item_share",
            "suppressed",
            "allowed_by",
            "near",
            "error",
        ],
        lineterminator="\n",
    )
    if fmt is OutputFormat.CSV:
        writer.writeheader()
    with progress_bar(enabled=progress) as bar:
        task = bar.add_task("scanning", total=len(candidates))
        count = workers or max(1, min(os.cpu_count() or 1, len(candidates)))
        options = HashOptions(
            frames=frames, variants=matcher.wants_query_variants, sampling=Sampling(rate=fps)
        )
        for outcome in hash_many(candidates, options, workers=count, fork=True):
            bar.update(task, advance=1, refresh=True)
            if isinstance(outcome, Skipped):
                continue
            assert isinstance(outcome, HashOutcome)
            result = scan_outcome(matcher, outcome, options)
            guard.record(result.matches)
            if files % FLUSH_EVERY == FLUSH_EVERY - 1:
                _report_floods(guard.flush(), err)
            files += 1
            errors += result.error is not None
            matched += result.matched
            for row in _rows(result):
                if fmt is OutputFormat.JSONL:
                    sys.stdout.write(json.dumps(row) + "\n")
                elif fmt is OutputFormat.CSV:
                    writer.writerow({**row, "allowed_by": _allowed_text(row)} if "bank" in row else row)
                else:
                    table_rows.append(row)
    if fmt is OutputFormat.TABLE and table_rows:
        columns = ("path", "bank", "signal", "distance", "via", "external id", "source")
        grid = table(*columns, fold=columns)
        for r in table_rows:
            add_row(
                grid,
                r["path"],
                r.get("bank", ""),
                r.get("signal_type", ""),
                str(r.get("distance", "")),
                " / ".join(
                    v
                    for v in (r.get("query_variant"), r.get("variant"), _second(r), _at(r), _cleared(r))
                    if v
                ),
                r.get("external_id") or "",
                r.get("error") or r.get("source_name", ""),
            )
        print_table(grid)
    elapsed = max(time.monotonic() - started, 1e-9)
    _report_floods(guard.flush(), err)
    say(
        f"scanned {files} files in {elapsed:.1f} s ({files / elapsed:.1f} files/s): "
        f"{matched} matched, {errors} errors",
        to=err,
    )
    raise typer.Exit(EXIT_MATCHED if matched else 1 if errors else 0)
