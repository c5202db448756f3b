"""`childshield match`: match hashes against the banks (one, or JSON Lines on standard input)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Annotated, Any

import typer

from childshield.banks.formats import normalize_signal
from childshield.cli_bank import DbOption, _database
from childshield.cli_output import say
from childshield.matching import Matcher, MatchResult
from childshield.matching.matcher import DEFAULT_MIN_QUALITY, Query

EXIT_MATCHED = 3


def _record(result: MatchResult, signal_type: str, signal: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "signal_type": signal_type,
        "signal": signal.lower(),
        "matched": result.matched,
        "matches": [m.as_dict() for m in result.matches],
    }
    if result.allowed_by:  # each suppressed match names the entry that cleared it (its "allowed_by")
        out["suppressed"] = [m.as_dict() for m in result.suppressed]
        out["allowed_by"] = [m.as_dict() for m in result.allowed_by]
    if result.note:
        out["note"] = result.note
    return out


def _query_of(obj: Any) -> tuple[str, str, int | None]:
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    quality = obj.get("quality")
    if quality is not None and (isinstance(quality, bool) or not isinstance(quality, int)):
        raise ValueError("quality must be an integer")
    if "signal_type" in obj:
        return str(obj["signal_type"]), str(obj.get("signal", "")), quality
    for key in ("pdq", "md5", "sha1", "sha256"):
        if key in obj:
            return key, str(obj[key]), quality
    raise ValueError("no signal: give signal_type and signal, or one of pdq, md5, sha1, sha256")


def match_command(
    pdq: Annotated[str | None, typer.Option("--pdq", help="PDQ hash (64 hex digits).")] = None,
    quality: Annotated[int | None, typer.Option(help="Quality of the --pdq hash, if known.")] = None,
    md5: Annotated[str | None, typer.Option("--md5")] = None,
    sha1: Annotated[str | None, typer.Option("--sha1")] = None,
    sha256: Annotated[str | None, typer.Option("--sha256")] = None,
    stdin: Annotated[
        bool,
        typer.Option(
            "--stdin", help='JSON Lines in ({"id", "pdq"|"md5"|..., "quality"}), one line out per line in.'
        ),
    ] = False,
    min_quality: Annotated[
        int, typer.Option(min=0, max=100, help="PDQ hashes of lower quality are not matched.")
    ] = DEFAULT_MIN_QUALITY,
    batch: Annotated[
        int, typer.Option(min=1, help="With --stdin: lines matched together (output follows each batch).")
    ] = 1000,
    db: DbOption = None,
) -> None:
    """Match hashes against every enabled bank.  Exit status: 0 no match, 3 matched, 1 error, 2 usage."""
    given = [(k, v) for k, v in (("pdq", pdq), ("md5", md5), ("sha1", sha1), ("sha256", sha256)) if v]
    if stdin == bool(given) or len(given) > 1:
        raise typer.BadParameter("give exactly one of --pdq, --md5, --sha1, --sha256, or --stdin")
    with _database(db) as database:
        matcher = Matcher.load(database, min_quality=min_quality)
        warn_if_no_banks(matcher)
        if not stdin:
            kind, value = given[0]
            try:
                result = matcher.match(kind, value, quality=quality if kind == "pdq" else None)
            except ValueError as exc:
                say(str(exc), label="error:", style="red")
                raise typer.Exit(1) from None
            sys.stdout.write(json.dumps(_record(result, kind, value)) + "\n")
            raise typer.Exit(EXIT_MATCHED if result.matched else 0)
        any_match, failed = _match_stream(matcher, sys.stdin, batch)
    raise typer.Exit(EXIT_MATCHED if any_match else 1 if failed else 0)  # matches win over errors


def warn_if_no_banks(matcher: Matcher) -> None:
    """Nothing can match without an enabled bank: say so, or a wrong database reads as "all clean"."""
    if not matcher.policies:
        say(
            "warning: no bank is enabled in this database: nothing can match "
            "(`childshield bank list` shows the banks; check --db)"
        )


def _match_stream(matcher: Matcher, lines: Iterable[str], batch: int) -> tuple[bool, bool]:
    """JSON Lines in, one line out per line in, in order, matched ``batch`` queries at a time."""
    any_match = failed = False
    pending: list[tuple[dict[str, Any], Query | None]] = []

    def flush() -> None:
        nonlocal any_match
        queries = [q for _, q in pending if q is not None]
        results = iter(matcher.match_many(queries))
        for out, query in pending:
            if query is not None:
                result = next(results)
                out.update(_record(result, query[0], query[1]))
                any_match |= result.matched
            sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
        pending.clear()

    for line in lines:
        if not line.strip():
            continue
        out: dict[str, Any] = {}
        query: Query | None = None
        try:
            obj = json.loads(line)
            if isinstance(obj, dict) and "id" in obj:
                out["id"] = obj["id"]
            query = _query_of(obj)
            normalize_signal(query[0], query[1])  # a malformed signal is this line's error alone
        except (ValueError, TypeError) as exc:
            out["error"] = str(exc)[:200]
            query = None
            failed = True
        pending.append((out, query))
        if len(pending) >= batch:
            flush()
    flush()
    return any_match, failed
