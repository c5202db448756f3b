"""``childshield hash``: hash image and video files (MD5, SHA-1, SHA-256, PDQ; vPDQ for videos)."""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated

import typer

from childshield.cli_output import err, out_console, progress_bar, say
from childshield.hashing.batch import DEFAULT_TIMEOUT, Skipped, hash_many
from childshield.hashing.discover import discover
from childshield.hashing.output import OutputFormat, make_writer
from childshield.hashing.result import HashOutcome
from childshield.hashing.service import HashOptions
from childshield.media.decode import DEFAULT_MAX_FRAMES, DEFAULT_MAX_PIXELS
from childshield.media.video import Sampling


def parse_size(text: str) -> int:
    """Bytes in a size written as ``512M``, ``4GiB`` or ``123`` (powers of ten, or of two with ``i``)."""
    units = {"k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}
    raw = text.strip().lower().removesuffix("b")
    for suffix in sorted(units, key=len, reverse=True):
        if raw.endswith(suffix):
            return int(float(raw[: -len(suffix)]) * units[suffix])
    return int(float(raw))


def _size_option(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        size = parse_size(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a size (e.g. 512M or 4GiB)", param_hint=name) from None
    if size < 0:
        raise typer.BadParameter("must not be negative", param_hint=name)
    return size


def hash_command(
    paths: Annotated[
        list[str],
        typer.Argument(help="Image and video files, and folders (searched recursively)."),
    ],
    output_format: Annotated[
        OutputFormat | None,
        typer.Option("--format", "-f", help="Output format. Default: table on a terminal, jsonl otherwise."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", min=1, help="Worker processes. Default: all cores.")
    ] = None,
    dihedral: Annotated[
        bool, typer.Option("--dihedral", help="Add the PDQ of the 8 rotations and mirrors.")
    ] = False,
    frames: Annotated[
        bool,
        typer.Option(
            "--frames", help="Hash every frame of animations (GIF, WebP, APNG) and multi-page files."
        ),
    ] = False,
    exact: Annotated[
        bool,
        typer.Option(
            "--exact",
            help="Decode images at full size: slower, bit-identical to the reference pipeline (video "
            "frames are always hashed at their own size).",
        ),
    ] = False,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Refuse images with more pixels than this, before decoding.")
    ] = DEFAULT_MAX_PIXELS,
    max_frames: Annotated[int, typer.Option(min=1, help="With --frames, hash at most this many frames.")] = (
        DEFAULT_MAX_FRAMES
    ),
    max_bytes: Annotated[str, typer.Option(help="Refuse files larger than this (e.g. 512M).")] = "1GiB",
    timeout: Annotated[
        float,
        typer.Option(min=0, help="Seconds one file may take before its worker is stopped (0: no limit)."),
    ] = DEFAULT_TIMEOUT,
    memory_limit: Annotated[
        str, typer.Option(help="Address-space cap per worker (e.g. 4GiB; 0: none).")
    ] = "4GiB",
    progress: Annotated[
        bool | None, typer.Option("--progress/--no-progress", help="Progress bar. Default: on a terminal.")
    ] = None,
    fps: Annotated[
        float, typer.Option(min=0, max=60, help="Video frames hashed per second (plus scene changes).")
    ] = 1.0,
    scene_threshold: Annotated[
        float, typer.Option(min=0, help="Thumbnail change (0..1) taken as a scene change; above 1: none.")
    ] = 0.12,
) -> None:
    """Hash image and video files: MD5, SHA-1, SHA-256 and PDQ (with quality); for videos the PDQ of
    each sampled frame with its time (``--frames`` lists them; ``--format vpdq`` writes vPDQ text).

    Exit status: 0 when every file was hashed, 1 when some could not be (the rest are still hashed and
    printed, failures carry an "error"), 2 on bad usage.
    """
    max_bytes_value = _size_option(max_bytes, "--max-bytes")
    if not max_bytes_value:
        raise typer.BadParameter("must be a positive size", param_hint="--max-bytes")
    memory = _size_option(memory_limit, "--memory-limit") or None
    options = HashOptions(
        dihedral=dihedral,
        frames=frames,
        exact=exact,
        max_pixels=max_pixels,
        max_frames=max_frames,
        max_bytes=max_bytes_value,
        sampling=Sampling(rate=fps, scene_threshold=scene_threshold),
    )
    # File names that are not valid in the locale's encoding are written back as the bytes they are.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="surrogateescape")
    fmt = output_format or (OutputFormat.TABLE if sys.stdout.isatty() else OutputFormat.JSONL)
    show_progress = err.is_terminal if progress is None else progress

    candidates = list(discover(paths))
    if fmt is OutputFormat.VPDQ and len(candidates) > 1:  # the text has no room to say which video
        err.print(
            f"--format vpdq writes one video's frames, as Meta's tools read them; {len(candidates)} files "
            "were given: hash one at a time (childshield hash VIDEO --format vpdq > VIDEO.txt)",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(2)
    if workers is None:  # no more processes than files
        workers = max(1, min(os.cpu_count() or 1, len(candidates)))
    hashed = failed = skipped = 0
    started = time.monotonic()
    with progress_bar(enabled=show_progress, rate=True) as bar:
        # Made inside the progress display: on a terminal, rich then prints our lines above the bar.
        writer = make_writer(fmt, sys.stdout, out_console(), frames=frames, dihedral=dihedral)
        task = bar.add_task("hashing", total=len(candidates), rate="")
        timeout_value = timeout or None
        for outcome in hash_many(
            candidates, options, workers=workers, timeout=timeout_value, memory_limit=memory, fork=True
        ):
            if isinstance(outcome, Skipped):
                skipped += 1
            else:
                assert isinstance(outcome, HashOutcome)
                writer.write(outcome)
                hashed += outcome.ok
                failed += not outcome.ok
            done = hashed + failed + skipped
            elapsed = time.monotonic() - started
            rate = f"{done / elapsed:.1f} files/s" if elapsed > 0 else ""
            bar.update(task, completed=done, rate=rate, refresh=True)
    writer.close()
    elapsed = time.monotonic() - started
    if err.is_terminal or progress:
        note = f"hashed {hashed} file{'s' * (hashed != 1)}"
        if failed:
            note += f", {failed} failed"
        if skipped:
            note += f", {skipped} skipped (not images)"
        say(f"{note} in {elapsed:.1f} s", style="dim")
    if not candidates:
        say("no files found", style="yellow")
    raise typer.Exit(1 if failed else 0)


__all__ = ["hash_command", "parse_size"]
