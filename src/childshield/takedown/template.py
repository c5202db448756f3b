"""Notice templates: user-editable text, rendered in Jinja2's sandbox over plain data only.

Whoever can set ``CHILDSHIELD_NOTICE_TEMPLATE`` decides what providers read, but must not be able to run
code or read secrets: the sandbox refuses attributes that reach Python's internals (``__globals__``,
``__class__``, ...), and the template sees frozen copies of what a notice needs (no database objects,
whose sessions lead to every table, and no settings, which hold passwords).  A template that does not
compile, names something it is not given, or grows past ``MAX_OUTPUT`` is refused with a message that
says where, before any item is counted as noticed.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.exceptions
import jinja2.sandbox

from childshield.errors import Invalid
from childshield.timefmt import aware, utc

MAX_OUTPUT = 1_000_000
"""Characters a rendered notice may have (a loop or a repetition gone wrong is refused, not mailed)."""
_MAX_POWER = 64
_MAX_BITS = 4096


class TemplateError(Invalid, ValueError):
    """A notice template that cannot be used; the message says which file, where and why.

    A ``ValueError`` too, as callers catch it."""


@dataclass(frozen=True, slots=True)
class NoticeProvider:
    key: str
    name: str
    country: str


@dataclass(frozen=True, slots=True)
class NoticeItem:
    url: str
    page_url: str
    found_at: dt.datetime
    ip: str
    host: str
    sha256: str
    md5: str
    pdq: str
    checked_at: dt.datetime
    """When it was last seen online (its last answered re-check, else when it was found)."""


class _Sandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """The sandbox, with repetition and powers bounded (``'x' * 10**10`` would exhaust memory)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: jinja2.runtime.Context, op: str, left: Any, right: Any) -> Any:
        if op == "**":
            if isinstance(right, int | float) and abs(right) > _MAX_POWER:
                raise jinja2.exceptions.SecurityError(f"powers above {_MAX_POWER} are not allowed")
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() * right > _MAX_BITS:
                raise jinja2.exceptions.SecurityError(f"a number of more than {_MAX_BITS} bits")
            return operator.pow(left, right)
        for seq, count in ((left, right), (right, left)):
            if (
                isinstance(seq, str | list | tuple)
                and isinstance(count, int)
                and len(seq) * count > MAX_OUTPUT
            ):
                raise jinja2.exceptions.SecurityError(f"a repetition longer than {MAX_OUTPUT} characters")
        return operator.mul(left, right)


def _environment() -> jinja2.Environment:
    env = _Sandbox(autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["utc"] = utc
    return env


SAMPLE_CONTEXT: dict[str, Any] = {
    "sender": "childshield hotline",
    "reference": "CS-20260101-000001",
    "provider": NoticeProvider("as64500", "Example Hosting", "NL"),
    "items": [
        NoticeItem(
            "https://host.example/a.jpg",
            "https://host.example/",
            dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            "192.0.2.1",
            "host.example",
            "0" * 64,
            "0" * 32,
            "",
            dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
        )
    ],
    "round": 2,
    "escalation": False,
    "legal_basis": "the law",
    "checked_at": "2026-01-01 00:00",
    "renotify_hours": 24,
}
"""A notice's context with made-up values: a template is tried on it when loaded."""


@dataclass(frozen=True)
class NoticeTemplate:
    source: str
    """Where the template came from (for messages)."""
    template: jinja2.Template

    def render(self, context: dict[str, Any]) -> tuple[str, str]:
        """(subject, body): the first line is the subject, the rest after a ``---`` line the body."""
        parts: list[str] = []
        size = 0
        try:
            for chunk in self.template.generate(**context):
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise TemplateError(f"{self.source}: the notice grew past {MAX_OUTPUT} characters")
                parts.append(chunk)
        except TemplateError:
            raise
        except jinja2.TemplateError as exc:
            raise TemplateError(f"{self.source}: {type(exc).__name__}: {exc}") from None
        except Exception as exc:  # a filter given the wrong type, a division by zero: the template's fault
            raise TemplateError(f"{self.source}: cannot be rendered ({type(exc).__name__}: {exc})") from None
        head, _, body = "".join(parts).partition("\n---\n")
        return " ".join(head.split())[:300], body.strip() + "\n"


def compile_template(text: str, source: str = "<template>") -> NoticeTemplate:
    """Compile and try a template on a sample notice; raises :class:`TemplateError` with the reason."""
    try:
        template = NoticeTemplate(source, _environment().from_string(text))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{source}, line {exc.lineno}: {exc.message}") from None
    template.render(SAMPLE_CONTEXT)
    return template


def load_template(path: Path) -> NoticeTemplate:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"cannot read the notice template {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TemplateError(f"the notice template {path} is not UTF-8 text") from None
    return compile_template(text, str(path))


def provider_view(key: str, name: str | None, country: str | None) -> NoticeProvider:
    return NoticeProvider(key, name or "", country or "")


def item_views(items: Sequence[Any]) -> list[NoticeItem]:
    """Frozen copies of takedown items (ORM rows stay out of the template's reach)."""
    return [
        NoticeItem(
            str(i.url),
            str(i.page_url or ""),
            i.found_at,
            str(i.ip or ""),
            str(i.host or ""),
            str(i.sha256 or ""),
            str(i.md5 or ""),
            str(i.pdq or ""),
            aware(i.last_checked_at or i.found_at),
        )
        for i in items
    ]
