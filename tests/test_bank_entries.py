"""Bank entries: add from media, import/export hash lists, entry states; on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import childshield
from childshield.banks import BankNotFound, InvalidBankSetting, create_bank, get_bank
from childshield.banks.entries import ImportRefused, add_outcomes, export_rows, import_rows, set_entry_state
from childshield.banks.formats import ListFormat, parse, parse_csv, parse_jsonl, write
from childshield.hashing.result import HashOutcome
from childshield.store.db import Database
from childshield.store.models import EntryState
from childshield.testing.corpus import encode, generated_photo
from cli_runner import cli_for

PDQ_A = "a" * 64
MD5_B = "b" * 32
SHA1_C = "c" * 40
SHA256_D = "d" * 64

GOOD_CSV = f"""signal_type,signal,external_id,labels
pdq,{PDQ_A},case-1,known;series-x
md5,{MD5_B.upper()}
sha1,{SHA1_C},,
# a comment
sha256,{SHA256_D},case-2,known
"""


def signals(rows: list[dict]) -> set[tuple[str, str]]:
    return {(r["signal_type"], r["signal"]) for r in rows}


def test_csv_import_with_provenance(db: Database) -> None:
    create_bank(db, "known")
    report = import_rows(db, "known", parse_csv(io.StringIO(GOOD_CSV)), source_name="list.csv")
    assert (report.added, report.already_present, report.skipped) == (4, 0, [])
    rows = export_rows(db, "known")
    assert signals(rows) == {("pdq", PDQ_A), ("md5", MD5_B), ("sha1", SHA1_C), ("sha256", SHA256_D)}
    pdq_row = next(r for r in rows if r["signal_type"] == "pdq")
    assert pdq_row["external_id"] == "case-1" and pdq_row["labels"] == ["known", "series-x"]
    assert pdq_row["source"] == "import" and pdq_row["source_name"] == "list.csv"
    assert pdq_row["state"] == "active"


def test_import_is_idempotent(db: Database) -> None:
    create_bank(db, "known")
    import_rows(db, "known", parse_csv(io.StringIO(GOOD_CSV)), source_name="list.csv")
    again = import_rows(db, "known", parse_csv(io.StringIO(GOOD_CSV)), source_name="list.csv")
    assert (again.added, again.already_present) == (0, 4)
    assert get_bank(db, "known").entries["active"] == 4


def test_malformed_rows_are_reported_by_line_and_skipped_or_refused(db: Database) -> None:
    create_bank(db, "known")
    text = GOOD_CSV + "md5,not-hex\npdq,abc\nphash,00\nonly-one-column\nsha1,{},x,y,z\n".format("c" * 40)
    parsed = parse_csv(io.StringIO(text))
    assert [e.line for e in parsed.errors] == [7, 8, 9, 10, 11]
    assert "32 hex digits" in parsed.errors[0].message
    assert "unknown signal type" in parsed.errors[2].message
    with pytest.raises(ImportRefused, match="5 malformed row"):
        import_rows(db, "known", parsed, source_name="bad.csv", strict=True)
    assert get_bank(db, "known").entries["active"] == 0  # strict: nothing written
    report = import_rows(db, "known", parsed, source_name="bad.csv")
    assert report.added == 4 and len(report.skipped) == 5


def test_jsonl_import_and_round_trip(db: Database) -> None:
    create_bank(db, "known")
    lines = [
        json.dumps({"signal_type": "pdq", "signal": PDQ_A, "labels": ["x"]}),
        "",
        "{not json",
        json.dumps(["not", "an", "object"]),
        json.dumps({"signal_type": "md5", "signal": MD5_B, "external_id": 42}),
        json.dumps({"signal_type": "md5", "signal": MD5_B}),  # duplicate inside the file
    ]
    parsed = parse_jsonl(io.StringIO("\n".join(lines)))
    assert [e.line for e in parsed.errors] == [3, 4]
    report = import_rows(db, "known", parsed, source_name="x.jsonl")
    assert (report.added, report.already_present) == (2, 1)
    for fmt in ListFormat:
        out = io.StringIO()
        assert write(export_rows(db, "known"), out, fmt) == 2
        create_bank(db, f"copy-{fmt.value}")
        back = import_rows(db, f"copy-{fmt.value}", parse(io.StringIO(out.getvalue()), fmt), source_name="rt")
        assert back.added == 2
        assert signals(export_rows(db, f"copy-{fmt.value}")) == signals(export_rows(db, "known"))
    assert next(r for r in export_rows(db, "copy-jsonl") if r["signal_type"] == "md5")["external_id"] == "42"


def test_import_into_a_missing_bank_writes_nothing(db: Database) -> None:
    with pytest.raises(BankNotFound):
        import_rows(db, "nope", parse_csv(io.StringIO(GOOD_CSV)), source_name="x")


def test_add_media_stores_signals_not_media(db: Database, tmp_path: Path) -> None:
    create_bank(db, "known")
    paths = []
    for k in range(3):
        path = tmp_path / f"img{k}.png"
        path.write_bytes(encode(generated_photo(300 + k, 200, 150), "PNG"))
        paths.append(path)
    outcomes = [HashOutcome(str(p), result=childshield.hash_file(p)) for p in paths]
    outcomes.append(HashOutcome(str(tmp_path / "bad.jpg"), error="not a recognised image format"))
    report = add_outcomes(db, "known", outcomes, labels=["demo"])
    assert report.added == 12 and len(report.skipped) == 1 and "bad.jpg" in report.skipped[0].message
    rows = export_rows(db, "known")
    first = childshield.hash_file(paths[0])
    by_type = {(r["signal_type"], r["signal"]): r for r in rows}
    pdq_row = by_type[("pdq", first.pdq)]
    assert pdq_row["quality"] == first.pdq_quality and pdq_row["source"] == "file"
    assert pdq_row["source_name"] == "img0.png" and pdq_row["labels"] == ["demo"]
    assert ("sha256", first.sha256) in by_type and ("md5", first.md5) in by_type
    again = add_outcomes(db, "known", outcomes[:3])
    assert (again.added, again.already_present) == (0, 12)


def test_entry_states(db: Database) -> None:
    create_bank(db, "known")
    import_rows(db, "known", parse_csv(io.StringIO(GOOD_CSV)), source_name="x")
    entry = export_rows(db, "known")[0]["entry_id"]
    with pytest.raises(InvalidBankSetting, match="reason"):
        set_entry_state(db, "known", entry, EntryState.DISABLED)
    set_entry_state(db, "known", entry, EntryState.DISABLED, "false match reported by partner")
    assert get_bank(db, "known").entries == {"active": 3, "disputed": 0, "disabled": 1}
    assert len(export_rows(db, "known")) == 3
    everything = export_rows(db, "known", states=tuple(EntryState))
    assert next(r for r in everything if r["entry_id"] == entry)["state"] == "disabled"
    set_entry_state(db, "known", entry, EntryState.ACTIVE)
    assert get_bank(db, "known").entries["active"] == 4
    with pytest.raises(childshield.banks.BankError, match="no entry"):
        set_entry_state(db, "known", 999_999, EntryState.ACTIVE)


def test_bank_add_import_export_commands(db: Database, tmp_path: Path) -> None:
    cli = cli_for(db, "bank")

    images = tmp_path / "images"
    images.mkdir()
    for k in range(2):
        (images / f"k{k}.jpg").write_bytes(encode(generated_photo(400 + k, 320, 240), "JPEG", quality=90))
    assert cli("create", "known").returncode == 0
    added = cli("add", "known", str(images), "--label", "demo")
    assert added.returncode == 0, added.stderr
    assert "8 added" in added.stderr
    exported = cli("export", "known", "--format", "jsonl")
    assert len(exported.stdout.splitlines()) == 8
    listing = tmp_path / "list.csv"
    listing.write_text(GOOD_CSV + "md5,zz\n")
    assert cli("create", "other").returncode == 0
    strict = cli("import", "other", str(listing), "--strict")
    assert strict.returncode == 1 and "line 7" in strict.stderr and "nothing imported" in strict.stderr
    loose = cli("import", "other", str(listing))
    assert loose.returncode == 1 and "4 added" in loose.stderr and "line 7" in loose.stderr
    out = tmp_path / "out.csv"
    assert cli("export", "other", "-o", str(out)).returncode == 0
    assert out.read_text().splitlines()[0] == "signal_type,signal,external_id,labels"
    assert len(out.read_text().splitlines()) == 5


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_parsers_never_crash(text: str) -> None:
    for parser in (parse_csv, parse_jsonl):
        parsed = parser(io.StringIO(text))
        for row in parsed.rows:
            assert row.line >= 1 and row.signal == row.signal.lower()
        for error in parsed.errors:
            assert error.line >= 1 and error.message


def test_threatexchange_file_format_round_trip(db: Database, tmp_path: Path) -> None:
    """The `threatexchange` file exchange: '<signal_type> <signal>' per line ('video_md5' is its MD5)."""
    from threatexchange.exchanges.impl.file_api import FileCollaborationConfig, LocalFileSignalExchangeAPI

    from childshield.banks.formats import parse_txfile

    text = f"pdq {PDQ_A}\nvideo_md5 {MD5_B}\n\nsha256 {SHA256_D}\nbogus\npdq 123\n"
    parsed = parse_txfile(io.StringIO(text))
    assert [(r.signal_type.value, r.signal) for r in parsed.rows] == [
        ("pdq", PDQ_A),
        ("md5", MD5_B),
        ("sha256", SHA256_D),
    ]
    assert [e.line for e in parsed.errors] == [5, 6]
    bare = parse_txfile(io.StringIO(f"{PDQ_A}\n"), default_type="pdq")
    assert bare.rows[0].signal == PDQ_A
    create_bank(db, "known")
    import_rows(db, "known", parsed, source_name="tx.txt")
    out = tmp_path / "export.txt"
    with out.open("w") as stream:
        write(export_rows(db, "known"), stream, ListFormat.TXFILE)
    # threatexchange's own file exchange reads what we wrote.
    api = LocalFileSignalExchangeAPI(
        FileCollaborationConfig(name="x", api="local_file", enabled=True, filename=str(out))
    )
    fetched = set()
    for delta in api.fetch_iter([], None):
        fetched |= set(delta.updates)
    assert ("pdq", PDQ_A) in fetched and ("video_md5", MD5_B) in fetched


def test_threatexchange_static_exchange_import(db: Database) -> None:
    """`bank import --exchange sample` fetches threatexchange's static exchange in process: its example PDQ
    and MD5 signals, with provenance, re-runnable, and matchable."""
    from threatexchange.signal_type.md5 import VideoMD5Signal
    from threatexchange.signal_type.pdq.signal import PdqSignal

    expected = {("pdq", s) for s in PdqSignal.get_examples()}
    expected |= {("md5", s) for s in VideoMD5Signal.get_examples()}
    cli = cli_for(db)

    create_bank(db, "samples")
    first = cli("bank", "import", "samples", "--exchange", "sample")
    assert first.returncode == 0, first.stderr
    assert f"{len(expected)} added" in first.stderr
    again = cli("bank", "import", "samples", "--exchange", "sample")
    assert "0 added" in again.stderr and f"{len(expected)} already present" in again.stderr
    rows = export_rows(db, "samples")
    assert signals(rows) == expected
    assert {(r["source"], r["source_name"]) for r in rows} == {("exchange", "threatexchange:sample")}
    pdq = sorted(s for t, s in expected if t == "pdq")[0]
    hit = cli("match", "--pdq", pdq)
    assert hit.returncode == 3 and json.loads(hit.stdout)["matches"][0]["distance"] == 0
    unknown = cli("bank", "import", "samples", "--exchange", "nope")
    assert unknown.returncode == 1 and "unknown exchange" in unknown.stderr
    both = cli("bank", "import", "samples", "x.csv", "--exchange", "sample")
    assert both.returncode == 2


def test_exchange_deltas_become_numbered_rows() -> None:
    """Removals upstream are not imported; types childshield does not match are reported by number."""
    from threatexchange.exchanges.fetch_state import FetchDelta, FetchedSignalMetadata, NoCheckpointing

    from childshield.banks.exchange import parsed_from_deltas

    pdq = "f" * 64
    deltas = [
        FetchDelta(
            {("pdq", pdq): FetchedSignalMetadata(), ("video_md5", "A" * 32): FetchedSignalMetadata()},
            NoCheckpointing(),
        ),
        FetchDelta(
            {("pdq", "1" * 64): None, ("url", "example.org"): FetchedSignalMetadata()}, NoCheckpointing()
        ),
    ]
    parsed = parsed_from_deltas(deltas)
    assert [(r.line, r.signal_type.value, r.signal) for r in parsed.rows] == [
        (1, "pdq", pdq),
        (2, "md5", "a" * 32),
    ]
    assert [(e.line, e.message.split(":")[0]) for e in parsed.errors] == [(4, "url")]
