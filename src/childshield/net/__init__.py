"""Reaching the web safely, for every part that fetches a URL someone else gave (the crawler, takedown
re-checks, stream watches, the API's URL scans): ``guard`` (the address guard), ``hops`` (one guarded GET
without I/O: which hop is allowed, which redirect is followed, the limits and what each failure means),
and its two drivers, ``fetch`` (sync) and ``afetch`` (async).

Nothing is imported here, so ``childshield.net.guard`` does not pay for httpx.
"""
