"""Precise errors of bank operations; ``str(error)`` is a message for people."""

from __future__ import annotations

from childshield.errors import Conflict, Invalid, NotFound


class BankError(Invalid):
    """A bank operation could not be done."""


class BankNotFound(NotFound, BankError):
    pass


class BankExists(Conflict, BankError):
    pass


class InvalidBankSetting(BankError):
    pass


class EntryNotFound(NotFound, BankError):
    pass
