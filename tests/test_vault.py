"""The evidence vault: preserving confirmed items sealed, access in the audit log, legal holds, expiry
with fake time, and signed bundles that verify (and do not, once altered)."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select

from childshield.accounts.service import Principal
from childshield.audit.log import records, verify_chain
from childshield.review.keys import Keyring
from childshield.review.queue import ReviewConfig, decide
from childshield.store.db import Database
from childshield.store.models import Evidence, ReviewItem, Role
from childshield.testing.corpus import encode, generated_photo
from childshield.vault.bundle import BundleError, export_bundle, generate_keys, read_public_key, verify_bundle
from childshield.vault.store import VaultError, expire, hold, open_evidence, preserve_confirmed, release
from childshield.web.app import create_app
from childshield.web.settings import ServiceSettings
from cli_runner import cli_for
from review_helpers import auth, bank_with, browser, people, png

DAY = dt.timedelta(days=1)


@pytest.fixture(autouse=True)
def _own_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def confirmed(db: Database, tmp_path: Path) -> tuple[Keyring, list[bytes]]:
    """Two uploads matched, queued and confirmed by review (consensus of one)."""
    keys = people(db)
    key_file = tmp_path / "media.keys"
    app = create_app(
        ServiceSettings(database_url=db.url, refresh_seconds=0, consensus=1, media_key_file=str(key_file))
    )
    known = generated_photo(1300, 320, 240)
    bank_with(browser(app), keys["admin"], known)
    uploads = [png(known), encode(known, "JPEG", quality=80)]
    for data in uploads:
        assert browser(app).post("/v1/scan", content=data, headers=auth(keys["service"])).status_code == 200
    with db.session() as session:
        ids = session.scalars(select(ReviewItem.id).order_by(ReviewItem.id)).all()
    for item_id in ids:
        decide(
            db,
            Principal(1, "r1", Role.REVIEWER),
            item_id,
            "confirm",
            classification="A2",
            config=ReviewConfig(),
        )
    return Keyring.load(key_file), uploads


def test_preserve_open_hold_expire(db: Database, tmp_path: Path) -> None:
    keyring, uploads = confirmed(db, tmp_path)
    now = dt.datetime.now(dt.UTC)
    assert preserve_confirmed(db, keyring, now=now) == 2
    assert preserve_confirmed(db, keyring, now=now) == 0  # once
    with db.session() as session:
        rows = session.scalars(select(Evidence).order_by(Evidence.id)).all()
        first, second = rows[0].id, rows[1].id
        assert all(r.sealed is not None and uploads[0][200:264] not in r.sealed for r in rows)
        assert rows[0].classification == "A2" and rows[0].details["reviews"][0]["verdict"] == "confirm"
    with pytest.raises(VaultError, match="say why"):
        open_evidence(db, keyring, first, actor="analyst", purpose=" ")
    opened = open_evidence(db, keyring, first, actor="analyst", purpose="case 2026-17")
    assert opened.data == uploads[0]
    access = [r for r in records(db) if r.action == "evidence.access"]
    assert [(r.actor, r.details["purpose"]) for r in access] == [("analyst", "case 2026-17")]

    hold(db, second, "court order 55/26", actor="legal")
    assert expire(db, now=now + 366 * DAY) == 1  # the held one stays
    with pytest.raises(VaultError, match="deleted"):
        open_evidence(db, keyring, first, actor="analyst", purpose="again")
    assert open_evidence(db, keyring, second, actor="analyst", purpose="held").data == uploads[1]
    release(db, second, actor="legal")
    assert expire(db, now=now + 367 * DAY) == 1
    with db.session() as session:
        tombstones = session.scalars(select(Evidence)).all()
        assert all(t.sealed is None and t.details is None and t.deleted_at and t.sha256 for t in tombstones)
    actions = [r.action for r in records(db)]
    assert (
        actions.count("evidence.delete") == 2 and "evidence.hold" in actions and "evidence.release" in actions
    )
    verify_chain(db)


def test_signed_bundles_verify_and_alterations_are_caught(db: Database, tmp_path: Path) -> None:
    keyring, uploads = confirmed(db, tmp_path)
    preserve_confirmed(db, keyring)
    private, public = tmp_path / "sign.key", tmp_path / "sign.pub"
    fingerprint = generate_keys(private, public)
    assert private.stat().st_mode & 0o777 == 0o600
    bundle = tmp_path / "bundle.zip"
    with db.session() as session:
        ids = session.scalars(select(Evidence.id)).all()
    export_bundle(
        db, keyring, list(ids), bundle, private, actor="analyst", purpose="request 9", recipient="police"
    )
    result = verify_bundle(bundle, read_public_key(public))
    assert (result.signer, result.evidence, result.identity_checked) == (fingerprint, 2, True)
    with zipfile.ZipFile(bundle) as z:
        assert sorted(z.read(f"media/{i}") for i in ids) == sorted(uploads)
    exports = [r for r in records(db) if r.action == "evidence.access"]
    assert len(exports) == 2 and all("export to police" in r.details["purpose"] for r in exports)

    def altered(name: str, change: dict[str, bytes]) -> Path:
        target = tmp_path / name
        with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(target, "w") as dst:
            for info in src.infolist():
                dst.writestr(info.filename, change.get(info.filename, src.read(info.filename)))
            for extra, data in change.items():
                if extra not in src.namelist():
                    dst.writestr(extra, data)
        return target

    media = f"media/{ids[0]}"
    with zipfile.ZipFile(bundle) as z:
        manifest = z.read("manifest.json")
    for name, change, reason in (
        ("media.zip", {media: b"something else"}, "does not match its hash"),
        ("manifest.zip", {"manifest.json": manifest.replace(b"request 9", b"request 8")}, "signature"),
        ("extra.zip", {"media/999": b"planted"}, "not in the manifest"),
    ):
        with pytest.raises(BundleError, match=reason):
            verify_bundle(altered(name, change), read_public_key(public))
    other_private, other_public = tmp_path / "other.key", tmp_path / "other.pub"
    generate_keys(other_private, other_public)
    with pytest.raises(BundleError, match="signature"):
        verify_bundle(bundle, read_public_key(other_public))  # signed by someone else

    verify = cli_for(db, "vault")
    ok = verify("verify", str(bundle), "--public-key", str(public))
    assert ok.returncode == 0 and "verified: 2 pieces of evidence" in ok.stdout
    bad = verify("verify", str(tmp_path / "media.zip"), "--public-key", str(public))
    assert bad.returncode == 1 and "does not verify" in bad.stderr
