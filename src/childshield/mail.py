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
        return Outcome("refused", f"recipient refused: {exc}"[:500], permanent)
    except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
        return Outcome("error", f"{type(exc).__name__}: {exc}"[:500])
    if refused:  # some recipients took it, some did not: not delivered as asked
        permanent = all(500 <= r.code < 600 for r in refused.values())
        who = ", ".join(sorted(refused))
        return Outcome("refused", f"recipients refused: {who}"[:500], permanent)
    return Outcome("sent")
