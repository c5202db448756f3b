"""Which provider hosts an address, from RDAP, cached in the database (answers for a week, failures for an
hour), with analysts' contact overrides kept across refreshes."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from childshield.store.db import Database
from childshield.store.models import IpLookup, Provider, utcnow
from childshield.takedown.rdap import RdapClient, RdapError
from childshield.timefmt import aware as _aware

FRESH = dt.timedelta(days=7)
RETRY_FAILED = dt.timedelta(hours=1)


def provider_for_ip(db: Database, rdap: RdapClient, ip: str, *, now: dt.datetime | None = None) -> int | None:
    """The provider id hosting ``ip`` (looked up, or cached); None when RDAP gave no answer."""
    now = now or utcnow()
    with db.session() as session:
        cached = session.get(IpLookup, ip)
        if cached is not None:
            age = now - _aware(cached.looked_up_at)
            if (cached.provider_id is not None and age < FRESH) or (cached.error and age < RETRY_FAILED):
                return cached.provider_id
    try:
        network = rdap.lookup_ip(ip)
        error = ""
    except RdapError as exc:
        network, error = None, str(exc)
    with db.session() as session:
        provider_id = None
        if network is not None:
            provider = session.scalar(select(Provider).where(Provider.key == network.provider_key[:200]))
            if provider is None:
                provider = Provider(key=network.provider_key[:200])
                session.add(provider)
            provider.name = network.org_name[:300]
            provider.country = network.country
            provider.abuse_email = clean_address(network.abuse_email)
            provider.updated_at = now
            session.flush()
            provider_id = provider.id
        row = session.get(IpLookup, ip) or IpLookup(ip=ip)
        row.network = network.cidr[:64] if network else ""
        row.provider_id = provider_id
        row.error = error[:1000]
        row.looked_up_at = now
        session.merge(row)
        return provider_id


def clean_address(value: str) -> str:
    """An e-mail address fit for a To header, or "" (RDAP data is outside our control: no spaces, line
    breaks or controls, one @, bounded)."""
    value = value.strip()
    if (
        not 3 <= len(value) <= 320
        or value.count("@") != 1
        or any(c.isspace() or ord(c) < 32 or c in '<>,;"()[]\\' for c in value)
    ):
        return ""
    return value


def set_contact(db: Database, key: str, email: str) -> None:
    """An analyst's contact for a provider (empty: back to RDAP's abuse contact)."""
    if email.strip() and not clean_address(email):
        raise ValueError(f"not a usable e-mail address: {email[:80]!r}")
    with db.session() as session:
        provider = session.scalar(select(Provider).where(Provider.key == key))
        if provider is None:
            raise LookupError(f"no provider {key!r}")
        provider.contact_override = email.strip()[:320]
