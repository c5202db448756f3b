"""A real SMTP server for tests (aiosmtpd) that requires STARTTLS with a self-signed certificate (or, with
``starttls=False``, one that offers no STARTTLS at all)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
import threading
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp.crt", folder / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class Mailbox:
    """Collects every message the server accepts (and whether the session was encrypted)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.messages: list[Message] = []
        self.encrypted: list[bool] = []
        self.delay = delay
        self._lock = threading.Lock()
        self.refuse_rcpt: set[str] = set()
        """Recipients answered 550 (a dead abuse address)."""
        self.refuse_sender = False
        """Answer 550 to MAIL FROM (our own setup is wrong)."""

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.refuse_sender:
            return "550 sender not allowed"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.refuse_rcpt:
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        with self._lock:
            self.messages.append(message_from_bytes(envelope.content))
            self.encrypted.append(session.ssl is not None)
        return "250 OK"


class SmtpServer:
    def __init__(self, folder: Path, *, delay: float = 0.0, starttls: bool = True) -> None:
        self.starttls = starttls
        self.cert, key = self_signed(folder)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, key)
        self.mailbox = Mailbox(delay)
        self.context = context
        self.port = 0

    def __enter__(self) -> SmtpServer:
        # A free port is picked and then bound: another test process may take it in between, so a
        # failed start is tried again on another port.
        for attempt in range(5):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
            self.controller = Controller(
                self.mailbox, hostname="127.0.0.1", port=self.port,
                tls_context=self.context if self.starttls else None, require_starttls=self.starttls,
            )  # fmt: skip
            try:
                self.controller.start()
                return self
            except (OSError, RuntimeError):
                if attempt == 4:
                    raise
        return self

    def __exit__(self, *_: object) -> None:
        self.controller.stop()
