"""Keys that seal kept media (AES-256-GCM), kept outside the database.

A key file holds one key per line, ``KEY_ID BASE64_KEY``; the last line is the current key (new media is
sealed with it), earlier ones still open what they sealed.  Rotating is appending a line (``childshield
media rotate-key``) and, optionally, re-sealing what is kept (``childshield media reseal``).  The file is
created with mode 0600 on first use when it does not exist, next to the embedded database by default.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from childshield.errors import ChildshieldError
from childshield.store.db import data_dir

ENV_VAR = "CHILDSHIELD_MEDIA_KEY_FILE"
KEY_BYTES = 32
NONCE_BYTES = 12


class KeyFileError(ChildshieldError):
    """A key file that cannot be used (malformed, unreadable, or lacking a key that sealed something).

    A fault of this service's setup, not of a request (the API answers 500 and logs it)."""


def default_key_file() -> Path:
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else data_dir() / "media.keys"


@dataclass(frozen=True)
class Keyring:
    keys: dict[str, bytes]
    current: str

    @classmethod
    def load(cls, path: Path | None = None, *, create: bool = True) -> Keyring:
        path = path or default_key_file()
        if not path.exists():
            if not create:
                raise KeyFileError(f"no key file at {path}")
            _create(path)
        keys: dict[str, bytes] = {}
        current = ""
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split()
            try:
                key = base64.b64decode(parts[1], validate=True) if len(parts) == 2 else b""
            except binascii.Error:
                key = b""
            if len(key) != KEY_BYTES or not 0 < len(parts[0]) <= 32:
                raise KeyFileError(f"{path}:{n}: expected 'KEY_ID BASE64' with a {KEY_BYTES}-byte key")
            keys[parts[0]] = key
            current = parts[0]
        if not current:
            raise KeyFileError(f"{path} holds no key")
        return cls(keys, current)

    def seal(self, data: bytes, context: str) -> tuple[str, bytes, bytes]:
        """(key id, nonce, ciphertext with tag); ``context`` (the content id) is bound as associated data,
        so a sealed blob moved to another row does not open."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        return self.current, nonce, AESGCM(self.keys[self.current]).encrypt(nonce, data, context.encode())

    def open(self, key_id: str, nonce: bytes, sealed: bytes, context: str) -> bytes:
        key = self.keys.get(key_id)
        if key is None:
            raise KeyFileError(f"the key {key_id!r} that sealed this media is not in the key file")
        return AESGCM(key).decrypt(nonce, sealed, context.encode())


def new_key_line() -> str:
    return f"{secrets.token_hex(4)} {base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}\n"


def _create(path: Path) -> None:
    """Write a complete key file under a temporary name, then link it into place: a worker starting at
    the same moment sees either no file or a whole one (and the first to link wins)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write("# childshield media keys: KEY_ID BASE64 (the last line seals new media). Keep secret.\n")
            f.write(new_key_line())
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another worker made it first: use theirs
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def rotate(path: Path | None = None) -> str:
    """Append a new current key; returns its id."""
    path = path or default_key_file()
    Keyring.load(path)  # refuse to append to a broken file
    line = new_key_line()
    with path.open("a") as f:
        f.write(line)
    return line.split()[0]
