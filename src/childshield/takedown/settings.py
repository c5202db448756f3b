"""Takedown settings from ``CHILDSHIELD_*`` environment variables (one place for the CLI and ``serve``)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from childshield.mail import SmtpSettings
from childshield.takedown.notices import DEFAULT_TEMPLATE, NoticeSettings


def _env(name: str, default: str = "") -> str:
    return os.environ.get(f"CHILDSHIELD_{name}", default)


def notice_settings() -> NoticeSettings:
    base = NoticeSettings()
    return NoticeSettings(
        sender=_env("NOTICE_SENDER", base.sender),
        from_addr=_env("NOTICE_FROM", base.from_addr),
        reply_to=_env("NOTICE_REPLY_TO"),
        legal_basis=_env("LEGAL_BASIS", base.legal_basis),
        renotify_every=dt.timedelta(hours=float(_env("RENOTIFY_HOURS", "24"))),
        escalate_after=int(_env("ESCALATE_AFTER", "3")),
        escalation_to=_env("ESCALATION_TO"),
        reference_prefix=_env("NOTICE_PREFIX", "CS"),
        template=Path(_env("NOTICE_TEMPLATE")) if _env("NOTICE_TEMPLATE") else DEFAULT_TEMPLATE,
    )


def smtp_settings() -> SmtpSettings:
    return SmtpSettings(
        host=_env("SMTP_HOST", "127.0.0.1"),
        port=int(_env("SMTP_PORT", "587")),
        starttls=_env("SMTP_STARTTLS", "true").lower() in ("1", "true", "yes", "on"),
        username=_env("SMTP_USER"),
        password=_env("SMTP_PASSWORD"),
        ca_file=_env("SMTP_CA_FILE"),
    )


def rdap_failure_ttl() -> dt.timedelta:
    """How long a failed RDAP lookup is not asked again (``CHILDSHIELD_RDAP_FAILURE_CACHE_SECONDS``, 0:
    asked again at the next round); answers are kept a week."""
    return dt.timedelta(seconds=max(0.0, float(_env("RDAP_FAILURE_CACHE_SECONDS", "0") or 0)))


def rdap_base() -> str | None:
    """A fixed RDAP server (``CHILDSHIELD_RDAP_BASE``); None: the IANA bootstrap registry picks one."""
    return _env("RDAP_BASE") or None
