"""Crafted evidence bundles: ``vault verify`` refuses each with a one-line reason (never a traceback), and
random damage to a good bundle never raises anything but :class:`BundleError`.

The bundles are built here the way ``export_bundle`` writes them (a signed manifest, the signer's key, the
files), from a few bytes standing in for media: no database is needed to verify one."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from childshield.vault.bundle import BundleError, _private, generate_keys, verify_bundle

FORMAT = "childshield-evidence-bundle/1"
MEDIA = {"media/1": b"\xff\xd8 stand-in for a picture " * 40, "media/2": b"another stand-in " * 30}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("keys")
    private, public = folder / "sign.key", folder / "sign.pub"
    generate_keys(private, public)
    return private, public


def manifest_of(files: dict[str, bytes]) -> dict[str, Any]:
    evidence = [
        {"evidence_id": k, "file": name, "file_sha256": hashlib.sha256(data).hexdigest()}
        for k, (name, data) in enumerate(files.items(), 1)
    ]
    return {"format": FORMAT, "evidence": evidence, "reports": []}


def write_bundle(
    path: Path,
    private: Path,
    files: dict[str, bytes],
    manifest: dict[str, Any] | list[Any] | bytes | None = None,
    *,
    hidden: dict[str, bytes] | None = None,
    hidden_first: bool = False,
) -> Path:
    """A signed bundle of ``files``.  ``hidden``: members written into the file but left out of the
    central directory (a forged copy that only a reader of local headers would see)."""
    if manifest is None:
        manifest = manifest_of(files)
    body = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    key = _private(private)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names, on purpose
        with zipfile.ZipFile(path, "x", compression=zipfile.ZIP_STORED) as z:
            forged: list[zipfile.ZipInfo] = []

            def hide() -> None:
                for name, data in (hidden or {}).items():
                    z.writestr(name, data)
                    forged.append(z.filelist[-1])

            if hidden_first:
                hide()
            z.writestr("manifest.json", body)
            z.writestr("manifest.sig", base64.b64encode(key.sign(body)))
            z.writestr("signer.pem", pem)
            for name, data in files.items():
                z.writestr(name, data)
            if not hidden_first:
                hide()
            for info in forged:  # its bytes stay where they were written; the directory forgets it
                z.filelist.remove(info)
            z.NameToInfo = {i.filename: i for i in z.filelist}
    return path


def verify_cli(path: Path, public: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "childshield.cli",
        "vault",
        "verify",
        str(path),
        "--public-key",
        str(public),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1 :]


def crafted(tmp_path: Path, private: Path) -> dict[str, tuple[Path, str]]:
    """Each attack: its bundle and (a part of) the reason it must be refused for."""
    out: dict[str, tuple[Path, str]] = {}
    good = write_bundle(tmp_path / "good.zip", private, MEDIA).read_bytes()
    with zipfile.ZipFile(tmp_path / "good.zip") as z:
        info = z.getinfo("media/1")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    (tmp_path / "crc.zip").write_bytes(flip(good, start + 5))
    out["bad CRC"] = (tmp_path / "crc.zip", "media/1 is damaged: Bad CRC-32")
    out["manifest not JSON"] = (
        write_bundle(tmp_path / "notjson.zip", private, MEDIA, b"{not json"),
        "manifest.json is not JSON",
    )
    out["manifest a list"] = (
        write_bundle(tmp_path / "list.zip", private, MEDIA, []),
        "not a bundle manifest",
    )
    shapeless = {"format": FORMAT, "evidence": [{"evidence_id": 1, "sha": "x"}], "reports": []}
    out["entry without a file"] = (
        write_bundle(tmp_path / "shape.zip", private, MEDIA, shapeless),
        "not a bundle manifest",
    )
    reports = {**manifest_of(MEDIA), "reports": [{"report_id": 1, "files": "none"}]}
    out["reports of the wrong shape"] = (
        write_bundle(tmp_path / "reports.zip", private, MEDIA, reports),
        "not a bundle manifest",
    )
    forged = {"media/1": b"a forged copy " * 40}
    out["forged copy after, outside the directory"] = (
        write_bundle(tmp_path / "after.zip", private, MEDIA, hidden=forged),
        "data outside the zip's directory",
    )
    out["forged copy before, outside the directory"] = (
        write_bundle(tmp_path / "before.zip", private, MEDIA, hidden=forged, hidden_first=True),
        "data outside the zip's directory",
    )
    header = good[info.header_offset : start + info.compress_size]  # a whole local entry, copied
    (tmp_path / "prepended.zip").write_bytes(header + good)  # zipfile reads past a prefix
    out["forged copy prepended to the file"] = (
        tmp_path / "prepended.zip",
        "data outside the zip's directory",
    )
    (tmp_path / "appended.zip").write_bytes(good + header)
    out["forged copy appended to the file"] = (tmp_path / "appended.zip", "data after the end of the zip")
    escape = {"../x": b"out of the folder"}
    out["a ../ name"] = (
        write_bundle(tmp_path / "dotdot.zip", private, escape),
        "unsafe file name in the bundle: ../x",
    )
    twice = write_bundle(tmp_path / "twice.zip", private, MEDIA)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(twice, "a") as z:
            z.writestr("media/1", b"a forged copy")
    out["a name twice in the directory"] = (twice, "appears twice")
    return out


def test_a_good_bundle_verifies(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    private, public = keys
    good = write_bundle(tmp_path / "good.zip", private, MEDIA)
    assert verify_bundle(good, public.read_bytes()).files == ["media/1", "media/2"]
    ran = verify_cli(good, public)
    assert ran.returncode == 0 and "verified: 2 pieces of evidence" in ran.stdout, ran.stderr


def test_crafted_bundles_are_refused_with_a_reason(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    private, public = keys
    cases = crafted(tmp_path, private)
    for what, (path, reason) in cases.items():
        with pytest.raises(BundleError) as refused:
            verify_bundle(path, public.read_bytes())
        assert reason in str(refused.value), what
    chosen = {*list(cases)[::3], "bad CRC", "manifest a list", "a ../ name"}
    for what, (path, reason) in ((w, cases[w]) for w in sorted(chosen)):
        ran = verify_cli(path, public)  # the command a recipient runs, on a few of them
        lines = ran.stderr.strip().splitlines()
        assert ran.returncode == 1 and "Traceback" not in ran.stderr, (what, ran.stderr)
        assert len(lines) == 1 and lines[0].startswith("does not verify: ") and reason in lines[0], what


@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory: pytest.TempPathFactory, keys: tuple[Path, Path]) -> bytes:
    folder = tmp_path_factory.mktemp("fuzz")
    files = {**MEDIA, "reports/7/report.xml": b"<report/>"}
    manifest = {**manifest_of(MEDIA), "reports": [{"report_id": 7, "files": [
        {"file": "reports/7/report.xml", "file_sha256": hashlib.sha256(b"<report/>").hexdigest()}
    ]}]}  # fmt: skip
    return write_bundle(folder / "good.zip", keys[0], files, manifest).read_bytes()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_bundles_raise_only_bundle_errors(
    data: st.DataObject, good_bundle: bytes, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    damaged = bytearray(good_bundle)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        damaged[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        damaged = damaged[: data.draw(st.integers(0, len(damaged)))]
    path = tmp_path / "damaged.zip"
    path.write_bytes(bytes(damaged))
    with contextlib.suppress(BundleError):  # anything else (a traceback for the recipient) fails
        verify_bundle(path, keys[1].read_bytes())
