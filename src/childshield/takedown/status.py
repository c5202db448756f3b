"""Where takedown work stands, and what fails, by cause (``takedown status``, ``/v1/takedown/status``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from childshield.store.db import Database
from childshield.store.models import IpLookup, Notice, Provider, TakedownItem, TakedownState


def takedown_status(db: Database) -> dict[str, Any]:
    """Items by state, online items nobody can be told about yet (no provider, no contact), notices by
    state, and ``errors`` by cause: re-checks that proved nothing, RDAP lookups that failed, notices
    waiting to be tried again and notices failed for good."""
    online = TakedownItem.state == TakedownState.ONLINE
    with db.session() as session:

        def counts(query: Any) -> dict[str, int]:
            return {str(key or "other"): n for key, n in sorted(session.execute(query).all(), key=_key)}

        items = counts(select(TakedownItem.state, func.count()).group_by(TakedownItem.state))
        notices = counts(select(Notice.state, func.count()).group_by(Notice.state))
        no_provider = session.scalar(
            select(func.count()).select_from(TakedownItem).where(online, TakedownItem.provider_id.is_(None))
        )
        no_contact = session.scalar(
            select(func.count())
            .select_from(TakedownItem)
            .join(Provider, Provider.id == TakedownItem.provider_id)
            .where(online, Provider.abuse_email == "", Provider.contact_override == "")
        )
        errors = {
            "recheck": counts(
                select(TakedownItem.last_cause, func.count())
                .where(online, TakedownItem.failures > 0)
                .group_by(TakedownItem.last_cause)
            ),
            "rdap": counts(
                select(IpLookup.cause, func.count()).where(IpLookup.error != "").group_by(IpLookup.cause)
            ),
            "notices_retrying": counts(
                select(Notice.cause, func.count())
                .where(Notice.state == "queued", Notice.last_error != "")
                .group_by(Notice.cause)
            ),
            "notices_failed": counts(
                select(Notice.cause, func.count()).where(Notice.state == "failed").group_by(Notice.cause)
            ),
        }
    return {
        "items": items,
        "online_without_provider": no_provider or 0,
        "online_without_contact": no_contact or 0,
        "notices": notices,
        "errors": errors,
    }


def _key(row: Any) -> str:
    return str(row[0] or "")
