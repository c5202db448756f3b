"""Banks of known hashes: create, configure, list; entries with provenance (more in later modules)."""

from childshield.banks.errors import BankError, BankExists, BankNotFound, InvalidBankSetting
from childshield.banks.service import (
    BankInfo,
    create_bank,
    delete_bank,
    get_bank,
    list_banks,
    rename_bank,
    update_bank,
)

__all__ = [
    "BankError",
    "BankExists",
    "BankInfo",
    "BankNotFound",
    "InvalidBankSetting",
    "create_bank",
    "delete_bank",
    "get_bank",
    "list_banks",
    "rename_bank",
    "update_bank",
]
