"""Consensus rules and the media key file, without a server."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from childshield.media.errors import MediaError
from childshield.review.consensus import Vote, settle
from childshield.review.keys import KeyFileError, Keyring, rotate
from childshield.review.preview import render
from childshield.store.models import ReviewState
from childshield.testing.corpus import encode, generated_photo

P, E, C, R = ReviewState.PENDING, ReviewState.ESCALATED, ReviewState.CONFIRMED, ReviewState.REJECTED


@pytest.mark.parametrize(
    ("votes", "required", "state", "classification"),
    [
        ([], 2, P, None),
        ([Vote("confirm", "A1")], 2, P, None),
        ([Vote("confirm", "A1"), Vote("confirm", "A1")], 2, C, "A1"),
        ([Vote("confirm", "A1"), Vote("confirm", "B1")], 2, E, None),  # same verdict, other classification
        ([Vote("confirm", "A1"), Vote("reject")], 2, E, None),
        ([Vote("reject"), Vote("reject")], 2, R, None),
        ([Vote("reject"), Vote("reject")], 3, P, None),
        ([Vote("reject"), Vote("reject"), Vote("reject")], 3, R, None),
        ([Vote("escalate")], 2, E, None),
        ([Vote("confirm", "A1"), Vote("escalate")], 2, E, None),
        ([Vote("confirm", "A1"), Vote("reject"), Vote("confirm", "B2", ruling=True)], 2, C, "B2"),
        ([Vote("confirm", "A1"), Vote("reject"), Vote("reject", ruling=True)], 2, R, None),
        ([Vote("confirm", "A2")], 1, C, "A2"),
        ([Vote("reject", "ignored")], 1, R, None),
    ],
)
def test_consensus(votes: list[Vote], required: int, state: ReviewState, classification: str | None) -> None:
    outcome = settle(votes, required)
    assert outcome.state is state and outcome.classification == classification


def test_key_file_is_created_private_and_rotation_keeps_old_keys_readable(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "media.keys"
    first = Keyring.load(path)
    assert path.stat().st_mode & 0o777 == 0o600 and len(first.keys) == 1
    key_id, nonce, sealed = first.seal(b"picture bytes", "content-1")
    assert b"picture bytes" not in sealed
    new_id = rotate(path)
    second = Keyring.load(path)
    assert second.current == new_id != key_id and len(second.keys) == 2
    assert second.open(key_id, nonce, sealed, "content-1") == b"picture bytes"
    assert second.seal(b"x", "c")[0] == new_id
    with pytest.raises(InvalidTag):
        second.open(key_id, nonce, sealed[:-1] + bytes([sealed[-1] ^ 1]), "content-1")
    with pytest.raises(KeyFileError, match="not in the key file"):
        Keyring.load(tmp_path / "other.keys").open(key_id, nonce, sealed, "content-1")


@pytest.mark.parametrize(
    "text", ["abc notbase64!!\n", "abc " + "QUJD" + "\n", "# only a comment\n", "onlyid\n"]
)
def test_malformed_key_files_are_refused_clearly(tmp_path: Path, text: str) -> None:
    path = tmp_path / "media.keys"
    path.write_text(text)
    with pytest.raises(KeyFileError):
        Keyring.load(path)
    with pytest.raises(KeyFileError, match="no key file"):
        Keyring.load(tmp_path / "missing.keys", create=False)


def test_previews_are_stills_and_hostile_files_fail_cleanly() -> None:
    import io

    from PIL import Image

    frames = [Image.fromarray(generated_photo(s, 96, 64)) for s in (1, 2, 3)]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    still = Image.open(io.BytesIO(render(out.getvalue(), blur=24, reveal=False)))
    assert still.format == "JPEG" and getattr(still, "n_frames", 1) == 1 and still.mode == "L"
    revealed = Image.open(
        io.BytesIO(render(encode(generated_photo(5, 2000, 1000), "PNG"), blur=24, reveal=True))
    )
    assert revealed.mode == "RGB" and max(revealed.size) == 768
    with pytest.raises(MediaError):
        render(encode(generated_photo(6, 300, 200), "JPEG")[:200], blur=24, reveal=True)
    with pytest.raises(MediaError):
        render(b"\x89PNG\r\n\x1a\n" + b"\0" * 40, blur=24, reveal=False)
