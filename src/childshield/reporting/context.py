"""What a scan's context says for a report: the keys a platform may give with a scan (or a person when
queuing a report by hand), kept with a match's decision as text, and read back here into the facts a
CyberTipline report (or a letter) carries.  docs/reporting.md lists them.

Values are checked where they come in (the API's ``ScanContext``, ``report queue``), and again when a
report is built: a value that cannot be read there is a :class:`ValueError` naming the key."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from posixpath import basename
from urllib.parse import unquote, urlsplit

from childshield.reporting.cybertip import EVENTS, FILE_ANNOTATIONS, INCIDENT_TYPES, REPORT_ANNOTATIONS
from childshield.textcheck import unsafe_character
from childshield.timefmt import aware

KINDS = ("web_page", "email", "chat_im", "peer2peer")
"""How the material went (NCMEC's internet details): a web page (the default), e-mail, chat or instant
messaging, a peer-to-peer network."""
DISABLED = ("temporarily", "permanently")
TIMES = ("uploaded_at", "ip_at", "account_disabled_at", "user_notified_at")
FLAGS = ("exif_viewed", "user_notified")
LISTS = {"report_annotations": REPORT_ANNOTATIONS, "file_annotations": FILE_ANNOTATIONS}
CHOICES = {
    "ip_event": EVENTS,
    "account_disabled": DISABLED,
    "incident_kind": KINDS,
    "incident_type": INCIDENT_TYPES,
}


def tags(context: Mapping[str, str], key: str) -> tuple[str, ...]:
    """A comma-separated list of tags (``report_annotations``, ``file_annotations``), each known."""
    known = LISTS[key]
    chosen = tuple(dict.fromkeys(t.strip() for t in context.get(key, "").split(",") if t.strip()))
    unknown = [t for t in chosen if t not in known]
    if unknown:
        raise ValueError(f"{key}: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    return chosen


def when(context: Mapping[str, str], key: str) -> dt.datetime | None:
    """A time with its zone (ISO 8601), or None when not given."""
    value = context.get(key, "")
    if not value:
        return None
    try:
        at = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{key}: {value[:40]!r} is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise ValueError(f"{key}: {value[:40]!r} has no time zone")
    return aware(at)


def flag(context: Mapping[str, str], key: str) -> bool | None:
    value = context.get(key, "").strip().lower()
    if not value:
        return None
    if value not in ("true", "false"):
        raise ValueError(f"{key}: {value[:20]!r} is neither true nor false")
    return value == "true"


def choice(context: Mapping[str, str], key: str) -> str:
    value = context.get(key, "")
    if value and value not in CHOICES[key]:
        raise ValueError(f"{key}: {value[:40]!r} is not one of {', '.join(CHOICES[key])}")
    return value


def check(context: Mapping[str, str]) -> None:
    """Raise :class:`ValueError` (naming the key) unless every report key of ``context`` reads."""
    for key in LISTS:
        tags(context, key)
    for key in TIMES:
        when(context, key)
    for key in FLAGS:
        flag(context, key)
    for key in CHOICES:
        choice(context, key)
    if context.get("ip"):
        try:
            ipaddress.ip_address(context["ip"])
        except ValueError:
            raise ValueError(f"ip: {context['ip'][:64]!r} is not an IP address") from None


def name_in_url(url: str) -> str:
    """The last segment of a URL's path, decoded (the name a file was published under), or ''
    when there is none or it would not read as it is (control or format characters)."""
    try:
        name = unquote(basename(urlsplit(url).path))
    except ValueError:
        return ""
    if not name.strip() or name in (".", "..") or unsafe_character(name) is not None:
        return ""
    return name[:1000]


def upload_name(name: str | None) -> str:
    """The file name of an upload (a multipart form's), without any folders a client sent along
    (``C:\\Users\\...\\a.jpg``), or '' when there is none or it would not read as it is."""
    if not name:
        return ""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    if not name.strip() or name in (".", "..") or unsafe_character(name) is not None:
        return ""
    return name[:1000]


def distinct(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def first(contexts: Sequence[Mapping[str, str]], key: str) -> str:
    return next((c[key] for c in contexts if c.get(key)), "")
