"""Accounts, roles, passwords and API keys."""

from childshield.accounts.service import (
    AccountError,
    Principal,
    authenticate_key,
    authenticate_password,
    create_api_key,
    create_user,
    list_users,
    revoke_api_key,
    set_password,
)

__all__ = [
    "AccountError",
    "Principal",
    "authenticate_key",
    "authenticate_password",
    "create_api_key",
    "create_user",
    "list_users",
    "revoke_api_key",
    "set_password",
]
