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
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from childshield import __version__
from childshield.review.keys import Keyring
from childshield.store.db import Database
from childshield.vault.store import open_evidence

MANIFEST, SIGNATURE, SIGNER = "manifest.json", "manifest.sig", "signer.pem"


class BundleError(Exception):
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
    key = serialization.load_pem_public_key(data)
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


def verify_bundle(path: Path, public_key: bytes | None = None, *, max_bytes: int = 20 * 1024**3) -> Verified:
    """Check a bundle's signature (against ``public_key`` when given) and every file in it."""
    try:
        bundle = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BundleError(f"not a readable bundle: {exc}") from None
    with bundle:
        listing = bundle.namelist()
        names = set(listing)
        if len(names) != len(listing):
            raise BundleError("a file name appears twice in the bundle (a forged copy may hide behind it)")
        for needed in (MANIFEST, SIGNATURE, SIGNER):
            if needed not in names:
                raise BundleError(f"{needed} is missing")
        if sum(i.file_size for i in bundle.infolist()) > max_bytes:
            raise BundleError("the bundle is larger than allowed")
        body = bundle.read(MANIFEST)
        key = _public(public_key if public_key is not None else bundle.read(SIGNER))
        try:
            key.verify(base64.b64decode(bundle.read(SIGNATURE), validate=True), body)
        except (InvalidSignature, ValueError):
            raise BundleError(
                "the signature does not match the manifest (altered, or another signer)"
            ) from None
        manifest = json.loads(body)
        listed = {MANIFEST, SIGNATURE, SIGNER}
        report_files = [f for r in manifest.get("reports", []) for f in r.get("files", [])]
        for entry in [*manifest.get("evidence", []), *report_files]:
            name = entry["file"]
            if name is None:  # evidence listed without media
                continue
            listed.add(name)
            if name not in names:
                raise BundleError(f"{name} is missing")
            with bundle.open(name) as f:
                digest = hashlib.sha256()
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
            if digest.hexdigest() != entry["file_sha256"]:
                raise BundleError(f"{name} does not match its hash in the manifest")
        extra = names - listed
        if extra:
            raise BundleError(f"files not in the manifest: {', '.join(sorted(extra)[:5])}")
        return Verified(
            signer=fingerprint(key),
            evidence=len(manifest.get("evidence", [])),
            reports=len(manifest.get("reports", [])),
            files=sorted(listed - {MANIFEST, SIGNATURE, SIGNER}),
            identity_checked=public_key is not None,
        )


def read_public_key(path: Path) -> bytes:
    data = path.read_bytes()
    _public(data)
    return data
