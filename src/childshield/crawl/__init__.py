"""The hotline crawler: a frontier of URLs in the store, polite per-host pacing, link extraction, and the
queue of unmatched media for review.  Its fetches go through :mod:`childshield.net`."""
