"""Precise errors of bank operations; ``str(error)`` is a message for people."""

from __future__ import annotations


class BankError(Exception):
    """A bank operation could not be done."""


class BankNotFound(BankError):
    pass


class BankExists(BankError):
    pass


class InvalidBankSetting(BankError):
    pass


class EntryNotFound(BankError):
    pass
