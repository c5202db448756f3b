"""Sending one e-mail over SMTP (STARTTLS, optional login), and what the outcome means for a retry.

Removal notices (``takedown.notices``) and e-mailed reports (``reporting.mailer``) both send through
``send``: a refused recipient is that message's problem (for good on a 5xx); anything else (the server
away, TLS, authentication, our sender refused) is ours, and the caller stops its round."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal

import aiosmtplib


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "127.0.0.1"
    port: int = 587
    starttls: bool = True
    username: str = ""
    password: str = ""
    ca_file: str = ""
    """Trust this CA for the server's certificate (besides the system's)."""
    timeout: float = 30.0


@dataclass(frozen=True)
class Outcome:
    status: Literal["sent", "refused", "error"]
    """sent; refused (the recipient: this message's problem); error (ours or the server's: stop)."""
    error: str = ""
    permanent: bool = False
    """A refusal that will not change (every recipient refused with a 5xx)."""
    cause: str = ""
    """Why it was not sent, in one word: ``recipient-refused``, ``smtp-unreachable``, ``smtp-timeout``,
    ``smtp-starttls`` (the server offers no STARTTLS but it is required), ``smtp-tls``, ``smtp-auth``,
    ``smtp-sender-refused``, ``smtp-error``."""


async def send(msg: EmailMessage, smtp: SmtpSettings, context: ssl.SSLContext | None = None) -> Outcome:
    """Hand ``msg`` to the SMTP server; never raises for SMTP or network trouble."""
    try:
        if context is None and smtp.starttls:
            context = ssl.create_default_context(cafile=smtp.ca_file or None)
        refused, _ = await aiosmtplib.send(
            msg,
            hostname=smtp.host,
            port=smtp.port,
            start_tls=smtp.starttls,
            tls_context=context if smtp.starttls else None,
            username=smtp.username or None,
            password=smtp.password or None,
            timeout=smtp.timeout,
        )
    except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPRecipientRefused) as exc:
        codes = [r.code for r in getattr(exc, "recipients", [])] or [getattr(exc, "code", 0)]
        permanent = all(500 <= code < 600 for code in codes)
        return Outcome("refused", f"recipient refused: {exc}"[:500], permanent, "recipient-refused")
    except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
        said = f"{type(exc).__name__}: {exc}"[:500]
        where = f" ({smtp.host}:{smtp.port})"
        return Outcome("error", said + where, cause=failure_cause(exc))
    if refused:  # some recipients took it, some did not: not delivered as asked
        permanent = all(500 <= r.code < 600 for r in refused.values())
        who = ", ".join(sorted(refused))
        return Outcome("refused", f"recipients refused: {who}"[:500], permanent, "recipient-refused")
    return Outcome("sent")


def failure_cause(exc: BaseException) -> str:
    """The cause of an SMTP failure that is not the recipient's, in one word (see :class:`Outcome`)."""
    if isinstance(exc, ssl.SSLError):
        return "smtp-tls"
    if isinstance(exc, (aiosmtplib.SMTPTimeoutError, TimeoutError)):
        return "smtp-timeout"
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return "smtp-auth"
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return "smtp-sender-refused"
    if isinstance(exc, aiosmtplib.SMTPException) and "STARTTLS" in str(exc):
        return "smtp-starttls"  # the server offers no STARTTLS, and we require it
    if isinstance(exc, (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError)):
        return "smtp-unreachable"
    return "smtp-error"
