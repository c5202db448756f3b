"""One error tree: every exception childshield raises derives from :class:`ChildshieldError`.

Under the root sit a few *categories*.  A category says what kind of failure it is, and so how each
front door answers it; it is the one table of that answer (``http_status``, ``exit_code``,
:meth:`ChildshieldError.headers`).  The API's exception handler (``web.app``) and the command line's
(``cli_errors``) read it; no door translates an error by hand unless it means to answer differently.

* ChildshieldError     500 / 1   a fault of this service or its own setup (the API logs the message)
  + NotFound           404 / 1   what was named does not exist (bank, entry, account, evidence, ...)
  + Conflict           409 / 1   the stored state refuses it (a name taken, evidence deleted, ...)
  + Invalid            422 / 1   input that cannot be used (a request's, a file's, a setting's)
  + Refused            422 / 1   well formed, but a rule says no (the address guard, a strict import)
  + Busy               503 / 1   try again later (``Retry-After``): a resource stayed taken
  + Unavailable        503 / 1   something this service depends on did not answer usably

Exit status 1 for every category: 2 stays click's usage error and 3 ``match``/``scan``'s "matched".

A family of errors (:class:`~childshield.banks.errors.BankError`, ``AccountError``, ``MediaError``, ...)
derives from the category most of its members belong to; a member that maps otherwise names its
category *first* among its bases (``class BankNotFound(NotFound, BankError)``), so that it wins in the
method resolution order.  ``tests/test_errors.py`` holds every class to this.  A class that callers
catch as a builtin (``ValueError``, ``LookupError``, ``OSError``) keeps that builtin as a base too.

Messages are for people: ``str(error)`` names the cause (which bank, which line, which file) and is
what the API's ``detail`` and the command line's ``error:`` line say.
"""

from __future__ import annotations

import math

__all__ = [
    "CATEGORIES",
    "Busy",
    "ChildshieldError",
    "Conflict",
    "Invalid",
    "NotFound",
    "Refused",
    "Unavailable",
    "category_of",
]


class ChildshieldError(Exception):
    """The root.  Raised as itself (or by a class that names no category), it is a fault of this
    service: the API answers 500 without the message (it may name internals), the log has it."""

    http_status: int = 500
    exit_code: int = 1
    public: bool = False
    """Whether ``str(error)`` may be told to whoever made the request."""

    def headers(self) -> dict[str, str]:
        """HTTP headers of the answer (``Retry-After`` for :class:`Busy`)."""
        return {}


class NotFound(ChildshieldError):
    """What the request names does not exist."""

    http_status = 404
    public = True


class Conflict(ChildshieldError):
    """The request is fine, but the state it meets refuses it (a name taken, evidence deleted)."""

    http_status = 409
    public = True


class Invalid(ChildshieldError):
    """Input that cannot be used: a request's field, an uploaded file, a file or setting given to a
    command.  The message says which and why."""

    http_status = 422
    public = True


class Refused(ChildshieldError):
    """Well formed, but a rule of this service says no (the address guard, a strict import).  The
    message says which rule; never what it learnt (an internal address) that the caller may not know."""

    http_status = 422
    public = True


class Busy(ChildshieldError):
    """Nothing is wrong with the request; a resource stayed taken past the patience: try again in
    ``retry_after`` seconds."""

    http_status = 503
    public = True
    retry_after: float = 5.0

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


class Unavailable(ChildshieldError):
    """A service this one depends on (a clearinghouse, RDAP, a stream's server) gave no usable answer."""

    http_status = 503
    public = True


CATEGORIES: tuple[type[ChildshieldError], ...] = (NotFound, Conflict, Invalid, Refused, Busy, Unavailable)


def category_of(error: type[ChildshieldError] | ChildshieldError) -> type[ChildshieldError]:
    """The category that decides how ``error`` is answered: the first in its method resolution order,
    else the root."""
    cls = error if isinstance(error, type) else type(error)
    return next((c for c in cls.__mro__ if c in CATEGORIES), ChildshieldError)
