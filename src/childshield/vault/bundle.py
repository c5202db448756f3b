"""Signed evidence bundles for law enforcement, and how a recipient verifies one.

A bundle is a zip file holding ``manifest.json`` (per piece of evidence: its id, content id, hashes,
classification, metadata, and the file it is in, with that file's SHA-256), the media files themselves
(``media/<id>``), ``manifest.sig`` (an Ed25519 signature of ``manifest.json``, base64) and the signer's
public key (``signer.pem``, for information: a recipient checks against the key they got from the sender
out of band).  ``verify_bundle`` checks the signature and every file's hash, and that nothing was added.
Signing keys: ``generate_keys`` (the private key file is written with mode 0600).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from childshield import __version__
from childshield.errors import Invalid
from childshield.review.keys import Keyring
from childshield.store.db import Database
from childshield.vault.store import open_evidence

MANIFEST, SIGNATURE, SIGNER = "manifest.json", "manifest.sig", "signer.pem"


class BundleError(Invalid):
    """A bundle that does not verify: the message says what is wrong."""


def generate_keys(private_path: Path, public_path: Path) -> str:
    """A new Ed25519 signing key pair; returns the public key's fingerprint."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = key.public_key()
    public_path.write_bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return fingerprint(public)


def fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + hashlib.sha256(raw).hexdigest()


def _private(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path} is not an Ed25519 private key")
    return key


def _public(data: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise BundleError("not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError("not an Ed25519 public key")
    return key


def export_bundle(
    db: Database,
    keyring: Keyring,
    evidence_ids: list[int],
    out: Path,
    signing_key: Path,
    *,
    actor: str,
    purpose: str,
    recipient: str = "",
    reports: Sequence[BundledReport] = (),
) -> str:
    """Write a signed bundle of the given evidence (and of the reports made of it) to ``out``; returns
    the manifest's SHA-256.  Each piece is opened through the vault, so each export is in the chain of
    custody."""
    key = _private(signing_key)
    entries: list[dict[str, Any]] = []
    files: dict[str, bytes] = {}
    for evidence_id in sorted(set(evidence_ids)):
        opened = open_evidence(
            db,
            keyring,
            evidence_id,
            actor=actor,
            purpose=f"export to {recipient}: {purpose}",
            media_required=False,
        )
        entry: dict[str, Any] = {
            "evidence_id": evidence_id,
            "content_id": opened.content_id,
            "file": None,  # no media was kept: the hashes and metadata only
            "details": opened.details,
        }
        if opened.data:
            name = f"media/{evidence_id}"
            files[name] = opened.data
            entry.update(
                file=name,
                file_sha256=hashlib.sha256(opened.data).hexdigest(),
                file_md5=hashlib.md5(opened.data).hexdigest(),
                size=len(opened.data),
            )
        entries.append(entry)
    manifest: dict[str, Any] = {
        "format": "childshield-evidence-bundle/1",
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "created_by": actor,
        "recipient": recipient,
        "purpose": purpose,
        "software": f"childshield {__version__}",
        "signer": fingerprint(key.public_key()),
        "evidence": entries,
        "reports": [],
    }
    for report in reports:
        listed = []
        for file_name, data in report.files.items():
            name = f"reports/{report.report_id}/{file_name}"
            files[name] = data
            listed.append({"file": name, "file_sha256": hashlib.sha256(data).hexdigest()})
        manifest["reports"].append({**report.facts, "report_id": report.report_id, "files": listed})
    body = json.dumps(manifest, sort_keys=True, indent=1).encode()
    signature = base64.b64encode(key.sign(body))
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with zipfile.ZipFile(out, "x", compression=zipfile.ZIP_STORED) as bundle:
        bundle.writestr(MANIFEST, body)
        bundle.writestr(SIGNATURE, signature)
        bundle.writestr(SIGNER, public_pem)
        for name, data in files.items():
            bundle.writestr(name, data)
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class BundledReport:
    """A report to go in a bundle: its documents (file name: bytes) and what to say of it."""

    report_id: int
    files: dict[str, bytes]
    facts: dict[str, Any]


@dataclass
class Verified:
    signer: str
    evidence: int
    reports: int = 0
    files: list[str] = field(default_factory=list)
    identity_checked: bool = False
    """False when no public key was given: the bundle is intact, but who signed it is unchecked."""


MAX_MANIFEST = 64 * 1024 * 1024
"""Bytes a manifest may have (it is read whole; hashes and metadata of a large case are far less)."""
FORMAT = "childshield-evidence-bundle/1"
_EOCD, _EOCD64, _LOCATOR, _LOCAL = b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07", b"PK\x03\x04"
_READ_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    struct.error,
    NotImplementedError,
    RuntimeError,
    ValueError,
    OverflowError,
    UnicodeDecodeError,
)
"""What zipfile raises on a damaged or odd archive (a bad CRC is BadZipFile; a compression method it
lacks, NotImplementedError; an encrypted member, RuntimeError)."""


def verify_bundle(path: Path, public_key: bytes | None = None, *, max_bytes: int = 20 * 1024**3) -> Verified:
    """Check a bundle's signature (against ``public_key`` when given) and every file in it.

    A zip reader believes the central directory, so the verifier also checks that the directory accounts
    for every byte of the file: local headers back to back from the first byte, each naming the file the
    directory names, then the directory, then its end record, nothing else.  Data outside the directory
    (a second, forged ``media/1`` appended or prepended, which another unzip tool might show instead) is
    refused, as are file names that would unpack outside a folder, names given twice, damaged members
    (a bad CRC) and manifests that are not a bundle's.  Raises :class:`BundleError`, and only that."""
    try:
        bundle = zipfile.ZipFile(path)
    except _READ_ERRORS as exc:
        raise BundleError(f"not a readable bundle: {exc}") from None
    with bundle:
        try:
            return _verify(bundle, public_key, max_bytes)
        except _READ_ERRORS as exc:  # zipfile meeting damage we did not look for first
            raise BundleError(f"not a readable bundle: {exc}") from None


def _verify(bundle: zipfile.ZipFile, public_key: bytes | None, max_bytes: int) -> Verified:
    infos = bundle.infolist()
    listing = [i.filename for i in infos]
    names = set(listing)
    if len(names) != len(listing):
        raise BundleError("a file name appears twice in the bundle (a forged copy may hide behind it)")
    for info in infos:
        _check_name(info.orig_filename)
    assert bundle.fp is not None
    _check_layout(bundle.fp, infos)
    for needed in (MANIFEST, SIGNATURE, SIGNER):
        if needed not in names:
            raise BundleError(f"{needed} is missing")
    if sum(i.file_size for i in infos) > max_bytes:
        raise BundleError("the bundle is larger than allowed")
    if bundle.getinfo(MANIFEST).file_size > MAX_MANIFEST:
        raise BundleError(f"{MANIFEST} is larger than {MAX_MANIFEST} bytes")
    body = _read(bundle, MANIFEST)
    key = _public(public_key if public_key is not None else _read(bundle, SIGNER))
    try:
        key.verify(base64.b64decode(_read(bundle, SIGNATURE), validate=True), body)
    except (InvalidSignature, ValueError):
        raise BundleError("the signature does not match the manifest (altered, or another signer)") from None
    evidence, reports, files = _manifest(body)
    listed = {MANIFEST, SIGNATURE, SIGNER}
    for name, sha256 in files:
        if name in listed:
            raise BundleError(f"the manifest lists {_shown(name)} twice")
        listed.add(name)
        if name not in names:
            raise BundleError(f"{_shown(name)} is missing")
        digest = hashlib.sha256()
        try:
            with bundle.open(name) as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        except _READ_ERRORS as exc:
            raise BundleError(f"{_shown(name)} is damaged: {exc}") from None
        if digest.hexdigest() != sha256:
            raise BundleError(f"{_shown(name)} does not match its hash in the manifest")
    extra = names - listed
    if extra:
        raise BundleError(f"files not in the manifest: {', '.join(_shown(n) for n in sorted(extra)[:5])}")
    return Verified(
        signer=fingerprint(key),
        evidence=evidence,
        reports=reports,
        files=sorted(listed - {MANIFEST, SIGNATURE, SIGNER}),
        identity_checked=public_key is not None,
    )


def _shown(name: str) -> str:
    """A name from the bundle as it may be printed: control and non-ASCII characters escaped, bounded."""
    return ascii(name[:200])[1:-1]


def _check_name(name: str) -> None:
    """Refuse names that would unpack anywhere but inside the folder they are unpacked in."""
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or ":" in name
        or any(part in ("", ".", "..") for part in parts)
        or not name.isprintable()
    ):
        raise BundleError(f"unsafe file name in the bundle: {_shown(name)}")


def _read(bundle: zipfile.ZipFile, name: str) -> bytes:
    try:
        return bundle.read(name)
    except _READ_ERRORS as exc:
        raise BundleError(f"{_shown(name)} is damaged: {exc}") from None


def _check_layout(f: IO[bytes], infos: list[zipfile.ZipInfo]) -> None:
    """Every byte of the file belongs to a member the central directory lists, or to the directory."""
    size = f.seek(0, os.SEEK_END)
    if size < 22:
        raise BundleError("not a readable bundle: too short")
    f.seek(size - 22)
    sig, _, _, _, count, cd_size, cd_offset, comment = struct.unpack("<4s4H2LH", f.read(22))
    if sig != _EOCD or comment:
        raise BundleError("data after the end of the zip (or a zip comment): not as childshield writes it")
    end_of_directory = size - 22
    locator = b""
    if size >= 22 + 20 + 56:
        f.seek(size - 22 - 20)
        locator = f.read(20)
    if locator[:4] == _LOCATOR:  # zip64 (zipfile writes it from 2 GiB on): the real numbers are there
        _, _, record_at, _ = struct.unpack("<4sLQL", locator)
        if record_at != size - 22 - 20 - 56:
            raise BundleError("data outside the zip's directory (before its end record)")
        f.seek(record_at)
        sig, _, _, _, _, _, _, count, cd_size, cd_offset = struct.unpack("<4sQ2H2L4Q", f.read(56))
        if sig != _EOCD64:
            raise BundleError("not a readable bundle: a damaged zip64 end record")
        end_of_directory = record_at
    if count != len(infos):
        raise BundleError("the zip's end record does not count the files its directory lists")
    if cd_offset + cd_size != end_of_directory:  # zipfile reads on past a prefix; another reader may not
        raise BundleError("data outside the zip's directory (before the first file, or after the last)")
    position = 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset != position:
            raise BundleError(f"data outside the zip's directory (before {_shown(info.filename)})")
        f.seek(position)
        header = f.read(30)
        if len(header) != 30:
            raise BundleError("not a readable bundle: truncated")
        sig, _, flags, _, _, _, _, _, _, name_length, extra_length = struct.unpack("<4s5H3L2H", header)
        if sig != _LOCAL:
            raise BundleError(f"not a readable bundle: no file header for {_shown(info.filename)}")
        raw = f.read(name_length)
        local = raw.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
        if local != info.orig_filename:
            raise BundleError(f"the file header for {_shown(info.filename)} names {_shown(local)}")
        if flags & 0x1:
            raise BundleError(f"{_shown(info.filename)} is encrypted")
        if flags & 0x8:  # its length would be written after the data, where the directory does not look
            raise BundleError(
                f"{_shown(info.filename)} has a trailing data descriptor: not as childshield writes it"
            )
        position += 30 + name_length + extra_length + info.compress_size
    if position != cd_offset:
        raise BundleError("data outside the zip's directory (after the last file)")


def _manifest(body: bytes) -> tuple[int, int, list[tuple[str, str]]]:
    """The counts of evidence and reports, and the (file, SHA-256) pairs a signed manifest lists."""
    try:
        manifest = json.loads(body)
    except (ValueError, RecursionError):
        raise BundleError(f"{MANIFEST} is not JSON") from None

    def wrong(why: str) -> BundleError:
        return BundleError(f"{MANIFEST} is not a bundle manifest: {why}")

    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise wrong(f"its format is not {FORMAT}")
    evidence, reports = manifest.get("evidence"), manifest.get("reports", [])
    if not isinstance(evidence, list) or not isinstance(reports, list):
        raise wrong("evidence and reports must be lists")
    entries: list[Any] = list(evidence)
    for report in reports:
        if not isinstance(report, dict) or not isinstance(report.get("files"), list):
            raise wrong("each report must have a list of files")
        entries += report["files"]
    files = []
    for entry in entries:
        if not isinstance(entry, dict) or "file" not in entry:
            raise wrong("each entry must name its file")
        name, sha256 = entry["file"], entry.get("file_sha256")
        if name is None:  # evidence listed without media
            continue
        if not isinstance(name, str) or not isinstance(sha256, str) or len(sha256) != 64:
            raise wrong("each file must have a name and a SHA-256")
        _check_name(name)
        files.append((name, sha256.lower()))
    return len(evidence), len(reports), files


def read_public_key(path: Path) -> bytes:
    data = path.read_bytes()
    _public(data)
    return data
