"""Where reports go: the reporter, the destinations, and the routes that choose destinations for each
piece of evidence (a TOML file, ``CHILDSHIELD_REPORTING_FILE``; see docs/reporting.md).

Without a file there is one destination, ``cybertipline`` (NCMEC, its test environment unless
``CHILDSHIELD_CYBERTIP_URL`` says otherwise), a route sending it everything, and no automatic queueing.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from childshield.errors import ChildshieldError
from childshield.reporting.client import TEST

KINDS = ("cybertipline", "email")
"""Destination kinds this version can deliver to (``reporting.deliver`` dispatches on them)."""


_NAME = re.compile(r"[A-Za-z0-9._-]{1,32}")
_EMAIL = re.compile(r"[^@\s,<>\"'()\[\];:\\]{1,64}@[A-Za-z0-9.-]{1,253}")
_LOOPBACK = re.compile(r"http://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(/|$)")


class ConfigError(ChildshieldError, ValueError):
    """A reporting file that cannot be used: the message says where and why.

    A fault of this service's setup (the API answers 500 and logs it); a ``ValueError`` too, as
    callers catch it."""


@dataclass(frozen=True)
class Reporter:
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    phone: str = ""
    organisation: str = ""
    company_template: str = ""
    """What law enforcement should know with every report (legal process, retention, emergencies)."""
    legal_url: str = ""
    platform: str = ""
    """The platform's name (the report's incidentSummary)."""
    default_url: str = ""
    """The URL reported when an upload was refused before it had a page of its own."""


@dataclass(frozen=True)
class Destination:
    name: str
    kind: str
    url: str = TEST
    """cybertipline: the API's base URL."""
    user_env: str = "CHILDSHIELD_CYBERTIP_USER"
    password_env: str = "CHILDSHIELD_CYBERTIP_PASSWORD"
    """cybertipline: the environment variables holding the credentials (never the file)."""
    hash_sharing_mou: bool = False
    """cybertipline: send industry classifications (only under NCMEC's Industry Hash Sharing MOU)."""
    to: tuple[str, ...] = ()
    """email: the recipients (a hotline's or a police unit's reporting address)."""
    needs_media: bool = True
    """Only evidence whose media is kept can go there (NCMEC takes the files; a letter needs none)."""

    def credentials(self) -> tuple[str, str]:
        return os.environ.get(self.user_env, ""), os.environ.get(self.password_env, "")


@dataclass(frozen=True)
class Route:
    destination: str
    classifications: frozenset[str] = frozenset()
    banks: frozenset[str] = frozenset()
    sources: frozenset[str] = frozenset()
    """Each non-empty set must contain the evidence's value (a bank: any of its matches' banks)."""

    def takes(self, classification: str | None, banks: set[str], source: str) -> bool:
        return (
            (not self.classifications or (classification or "") in self.classifications)
            and (not self.banks or bool(self.banks & banks))
            and (not self.sources or source in self.sources)
        )


@dataclass(frozen=True)
class ReportingConfig:
    reporter: Reporter = field(default_factory=Reporter)
    destinations: Mapping[str, Destination] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    auto: bool = False
    """Queue reports by these routes by themselves (``serve`` and ``report auto``)."""
    settle: dt.timedelta = dt.timedelta(minutes=10)
    """Wait this long after an incident's newest evidence, so that its files go in one report."""

    def destinations_for(self, classification: str | None, banks: set[str], source: str) -> list[str]:
        return list(
            dict.fromkeys(r.destination for r in self.routes if r.takes(classification, banks, source))
        )


def _env(name: str) -> str:
    return os.environ.get(f"CHILDSHIELD_{name}", "")


def ncmec_schema_file() -> str:
    """NCMEC's own schema file (``CHILDSHIELD_CYBERTIP_XSD``: what ``GET /xsd`` serves, downloaded with
    ``report schema``): every document is checked against it too, and the local CyberTipline of the
    tests validates with it instead of childshield's subset.  Empty: not configured."""
    return _env("CYBERTIP_XSD")


def default_config() -> ReportingConfig:
    cybertip = Destination(
        "cybertipline",
        "cybertipline",
        url=_env("CYBERTIP_URL") or TEST,
        hash_sharing_mou=_env("HASH_SHARING_MOU").lower() in ("1", "true", "yes"),
    )
    return ReportingConfig(
        reporter=Reporter(email=_env("REPORTER_EMAIL")),
        destinations={"cybertipline": cybertip},
        routes=(Route("cybertipline"),),
    )


def load_config(path: str | os.PathLike[str] | None = None) -> ReportingConfig:
    """The file at ``path`` (default ``CHILDSHIELD_REPORTING_FILE``), or the default without one."""
    path = path or _env("REPORTING_FILE")
    if not path:
        return default_config()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the reporting file {path}: {exc}") from None
    return parse_config(text, where=str(path))


def _strings(value: Any, where: str) -> frozenset[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where} must be a list of names")
    return frozenset(value)


def _keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}")


def _string(table: Mapping[str, Any], key: str, where: str, default: str = "") -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key} must be text")
    return value


def _table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    """A ``[key]`` table (empty when absent)."""
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [{key}] must be a table")
    return table


def _tables(
    data: Mapping[str, Any], key: str, plural: str, where: str
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Each ``[[key]]`` table with the label its errors name (``... [[route]] #2``)."""
    tables = data.get(key, [])
    if not isinstance(tables, list):
        raise ConfigError(f"{where}: {plural} are [[{key}]] tables")
    for n, table in enumerate(tables, 1):
        label = f"{where} [[{key}]] #{n}"
        if not isinstance(table, dict):
            raise ConfigError(f"{label} must be a table")
        yield label, table


def parse_config(text: str, *, where: str = "reporting file") -> ReportingConfig:
    """Read and check a reporting file; every problem is a :class:`ConfigError` naming the setting."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None
    _keys(data, {"reporter", "destination", "route", "auto"}, where)
    reporter_table = _table(data, "reporter", where)
    fields = set(Reporter.__dataclass_fields__)
    _keys(reporter_table, fields, f"{where} [reporter]")
    reporter = Reporter(**{k: _string(reporter_table, k, "reporter") for k in reporter_table})
    if reporter.email and not _EMAIL.fullmatch(reporter.email):
        raise ConfigError(f"{where} [reporter].email: {reporter.email[:80]!r} is not a plain e-mail address")

    destinations: dict[str, Destination] = {}
    for label, table in _tables(data, "destination", "destinations", where):
        _keys(
            table,
            {"name", "kind", "url", "user_env", "password_env", "hash_sharing_mou", "to"},
            label,
        )
        name, kind = _string(table, "name", label), _string(table, "kind", label)
        if not _NAME.fullmatch(name):
            raise ConfigError(f"{label}: a name is 1 to 32 letters, digits, '.', '_' or '-'")
        if name in destinations:
            raise ConfigError(f"{label}: the name {name!r} is used twice")
        if kind not in KINDS:
            raise ConfigError(f"{label}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
        mou = table.get("hash_sharing_mou", False)
        if not isinstance(mou, bool):
            raise ConfigError(f"{label}.hash_sharing_mou must be true or false")
        to = tuple(sorted(_strings(table["to"], f"{label}.to"))) if "to" in table else ()
        if kind == "email" and not to:
            raise ConfigError(f"{label}: an email destination needs 'to' (its recipients)")
        if any(not _EMAIL.fullmatch(a) for a in to):
            raise ConfigError(f"{label}.to: {', '.join(to)} are not plain e-mail addresses")
        url = _string(table, "url", label, TEST)
        if kind == "cybertipline" and not (url.startswith("https://") or _LOOPBACK.match(url)):
            raise ConfigError(f"{label}.url must be an https URL (plain http only to this machine)")
        destinations[name] = Destination(
            name,
            kind,
            url=url,
            user_env=_string(table, "user_env", label, Destination.user_env),
            password_env=_string(table, "password_env", label, Destination.password_env),
            hash_sharing_mou=mou,
            to=to,
            needs_media=kind == "cybertipline",
        )

    routes: list[Route] = []
    for label, table in _tables(data, "route", "routes", where):
        _keys(table, {"destination", "classifications", "banks", "sources"}, label)
        destination = _string(table, "destination", label)
        if destination not in destinations:
            raise ConfigError(f"{label}: no destination named {destination!r}")
        routes.append(
            Route(
                destination,
                **{
                    key: _strings(table[key], f"{label}.{key}")
                    for key in ("classifications", "banks", "sources")
                    if key in table
                },
            )
        )

    auto_table = _table(data, "auto", where)
    _keys(auto_table, {"enabled", "settle_minutes"}, f"{where} [auto]")
    enabled = auto_table.get("enabled", False)
    settle = auto_table.get("settle_minutes", 10)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where} [auto].enabled must be true or false")
    if isinstance(settle, bool) or not isinstance(settle, int | float) or not 0 <= settle <= 7 * 24 * 60:
        raise ConfigError(f"{where} [auto].settle_minutes must be a number of minutes up to a week")
    if enabled and not reporter.email:
        raise ConfigError(f"{where}: automatic reports need [reporter].email")
    return ReportingConfig(
        reporter=reporter,
        destinations=destinations,
        routes=tuple(routes),
        auto=enabled,
        settle=dt.timedelta(minutes=settle),
    )
