"""One delivery round over every destination: each kind through its own sender, all from the same
outbox table.  Used by ``childshield report send`` and by ``serve``'s reporting worker."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from childshield.mail import SmtpSettings
from childshield.reporting import mailer, outbox
from childshield.reporting.client import ApiError, CyberTipClient
from childshield.reporting.config import ReportingConfig
from childshield.review.keys import Keyring
from childshield.store.db import Database

log = logging.getLogger("childshield.reporting")


@dataclass
class Delivered:
    filed: dict[str, int] = field(default_factory=dict)
    stopped: dict[str, str] = field(default_factory=dict)
    """Destinations whose round stopped (credentials refused, the server away): why."""


async def deliver_due(
    db: Database,
    config: ReportingConfig,
    keyring: Keyring | None,
    smtp: SmtpSettings,
    *,
    prefix: str = "CS",
) -> Delivered:
    out = Delivered()
    for name, destination in config.destinations.items():
        try:
            if destination.kind == "cybertipline":
                if keyring is None:
                    out.stopped[name] = "no media key file: the files cannot be opened"
                    continue
                user, password = destination.credentials()
                client = CyberTipClient(destination.url, user, password)
                try:
                    out.filed[name] = await asyncio.to_thread(
                        outbox.send_due,
                        db,
                        client,
                        keyring,
                        hash_sharing_mou=destination.hash_sharing_mou,
                        destination=name,
                    )
                finally:
                    client.close()
            elif destination.kind == "email":
                out.filed[name] = await mailer.send_due(db, destination, config.reporter, smtp, prefix=prefix)
        except (outbox.Stop, ApiError) as exc:
            out.stopped[name] = str(exc)
            log.error("reports to %s stopped: %s", name, exc)
        except Exception as exc:  # one destination's trouble never keeps the others waiting
            out.stopped[name] = f"{type(exc).__name__}: {exc}"[:500]
            log.exception("reports to %s failed", name)
    return out
