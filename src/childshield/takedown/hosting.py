"""Which provider hosts an address, from RDAP, cached in the database, with analysts' contact overrides
kept across refreshes.

Only answers are cached (for a week).  A failed lookup (the registry unreachable, an error status, a
malformed answer) is recorded with its cause, and asked again at the next round: a failure is cached
only for ``failure_ttl`` (``CHILDSHIELD_RDAP_FAILURE_CACHE_SECONDS``, 0 by default), so that RDAP
coming back is noticed at once.  A failed refresh keeps the provider the last answer named."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select

from childshield.errors import Invalid, NotFound
from childshield.store.db import Database
from childshield.store.models import IpLookup, Provider, utcnow
from childshield.takedown.rdap import RdapClient, RdapError
from childshield.timefmt import aware as _aware

FRESH = dt.timedelta(days=7)


@dataclass(frozen=True)
class Lookup:
    provider_id: int | None
    """The provider hosting the address (the last answer's, when a refresh failed)."""
    error: str = ""
    """Why the lookup failed ("" when it did not)."""
    cause: str = ""
    cached: bool = False


def provider_for_ip(
    db: Database,
    rdap: RdapClient,
    ip: str,
    *,
    now: dt.datetime | None = None,
    failure_ttl: dt.timedelta = dt.timedelta(0),
) -> Lookup:
    """The provider hosting ``ip``: looked up, or a cached answer (or a failure younger than
    ``failure_ttl``)."""
    now = now or utcnow()
    with db.session() as session:
        cached = session.get(IpLookup, ip)
        if cached is not None:
            age = now - _aware(cached.looked_up_at)
            if cached.error and age < failure_ttl:
                return Lookup(cached.provider_id, cached.error, cached.cause or "other", cached=True)
            if cached.provider_id is not None and not cached.error and age < FRESH:
                return Lookup(cached.provider_id, cached=True)
    try:
        network = rdap.lookup_ip(ip)
        error = cause = ""
    except RdapError as exc:
        network, error, cause = None, str(exc), exc.cause
    with db.session() as session:
        row = session.get(IpLookup, ip) or IpLookup(ip=ip, network="", provider_id=None)
        provider_id = row.provider_id  # kept when a refresh fails
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
            row.network = network.cidr[:64]
        row.provider_id = provider_id
        row.error = error[:1000]
        row.cause = cause[:32]
        row.looked_up_at = now
        session.merge(row)
        return Lookup(provider_id, error, cause)


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


class NoSuchProvider(NotFound, LookupError):
    """No hosting provider of that key.  A ``LookupError`` too, as callers catch it."""


class BadContact(Invalid, ValueError):
    """Not an e-mail address notices can be sent to.  A ``ValueError`` too, as callers catch it."""


def set_contact(db: Database, key: str, email: str) -> None:
    """An analyst's contact for a provider (empty: back to RDAP's abuse contact)."""
    if email.strip() and not clean_address(email):
        raise BadContact(f"not a usable e-mail address: {email[:80]!r}")
    with db.session() as session:
        provider = session.scalar(select(Provider).where(Provider.key == key))
        if provider is None:
            raise NoSuchProvider(f"no provider {key!r}")
        provider.contact_override = email.strip()[:320]
