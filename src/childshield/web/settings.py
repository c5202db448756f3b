"""Service settings, from arguments or ``CHILDSHIELD_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_MAX_UPLOAD = 50 * 1024 * 1024


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


@dataclass(frozen=True)
class ServiceSettings:
    database_url: str | None = None
    """None: ``$CHILDSHIELD_DATABASE_URL`` or the embedded SQLite default."""
    max_upload_bytes: int = field(
        default_factory=lambda: _env_int("CHILDSHIELD_MAX_UPLOAD", DEFAULT_MAX_UPLOAD)
    )
    refresh_seconds: float = 1.0
    """How often (at most) a worker checks the banks for changes; every change is seen within this."""
    max_lookup: int = 10_000
    """Signals per lookup request."""
    webhook_url: str | None = field(default_factory=lambda: os.environ.get("CHILDSHIELD_WEBHOOK_URL") or None)
    """Where decisions are posted (signed with ``webhook_secret``); none: no webhooks."""
    webhook_secret: str = field(default_factory=lambda: os.environ.get("CHILDSHIELD_WEBHOOK_SECRET", ""))
    webhook_poll_seconds: float = 1.0
    scan_rate: float = field(default_factory=lambda: float(os.environ.get("CHILDSHIELD_SCAN_RATE", "500")))
    """Scans and lookups per second per API key and worker (0: no limit)."""
    scan_burst: float = 1000.0
    fetch_allow: str = field(default_factory=lambda: os.environ.get("CHILDSHIELD_FETCH_ALLOW", ""))
    """Networks ``/v1/scan/url`` may reach although not public (comma-separated CIDRs); none by default."""
    fetch_timeout: float = 20.0
