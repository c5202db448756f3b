"""Crawl settings from ``CHILDSHIELD_CRAWL_*`` environment variables (the CLI's defaults and ``serve``'s
crawl worker read them here, in one place)."""

from __future__ import annotations

import os

DNS_ATTEMPTS = "CHILDSHIELD_CRAWL_DNS_ATTEMPTS"
DNS_BACKOFF = "CHILDSHIELD_CRAWL_DNS_BACKOFF"


def dns_retry() -> tuple[int, float]:
    """(tries, first backoff in seconds) for URLs whose host name could not be resolved for now."""
    attempts = int(os.environ.get(DNS_ATTEMPTS) or 5)
    backoff = float(os.environ.get(DNS_BACKOFF) or 60.0)
    if attempts < 1 or backoff < 0:
        raise ValueError(f"{DNS_ATTEMPTS} must be at least 1 and {DNS_BACKOFF} at least 0")
    return attempts, backoff
