"""Notice templates are user-editable: they render in the sandbox over plain data, and a bad one is refused
with its reason before any item is counted as noticed."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from childshield.store.db import Database
from childshield.store.models import Notice, TakedownItem
from childshield.takedown.notices import DEFAULT_TEMPLATE, NoticeSettings, plan
from childshield.takedown.template import TemplateError, compile_template, load_template, provider_view
from takedown_helpers import one_item_per_provider

HEAD = "Subject line\n---\n"


def _noticed(db: Database) -> list[int]:
    with db.session() as session:
        return list(session.scalars(select(TakedownItem.notices)).all())


def test_code_execution_through_globals_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    attacks = [
        f"{{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}}",
        f"{{{{ joiner.__init__.__globals__.os.popen('touch {marker}').read() }}}}",
        f"{{{{ lipsum.__globals__['os'].system('touch {marker}') }}}}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        f"{{{{ self._TemplateReference__context.cycler.__init__.__globals__.os.system('touch {marker}') }}}}",
    ]
    for attack in attacks:
        with pytest.raises(TemplateError):
            compile_template(HEAD + attack)
    assert not marker.exists()  # a plain Environment ran the command


def test_template_sees_plain_data_only(db: Database, tmp_path: Path) -> None:
    """ORM rows lead to the session and every table (API-key hashes); the template gets frozen copies."""
    now = dt.datetime.now(dt.UTC)
    one_item_per_provider(db, 1, now)
    for reach in ("provider.metadata", "items[0].metadata", "provider.abuse_email", "items[0].registry"):
        path = tmp_path / "t.txt"
        path.write_text(HEAD + "{{ " + reach + " }}\n")
        with pytest.raises(TemplateError):
            plan(db, NoticeSettings(template=path), now=now)
    assert _noticed(db) == [0]  # nothing was counted as noticed
    # what a notice needs is still there
    path = tmp_path / "ok.txt"
    path.write_text(
        HEAD + "{{ provider.name }} {% for i in items %}{{ i.url }} {{ i.found_at | utc }}{% endfor %}\n"
    )
    [nid] = plan(db, NoticeSettings(template=path), now=now)
    with db.session() as session:
        body = session.get(Notice, nid).body  # type: ignore[union-attr]
    assert body.startswith("Provider 0 http://p0.test/m.jpg ")


def test_syntax_error_gives_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("Subject\n---\nline\n{% for x in items %}\n{{ x.url }\n")
    with pytest.raises(TemplateError, match=r"bad\.txt, line \d"):
        load_template(path)


def test_exhausting_templates_are_refused_quickly() -> None:
    for text in (
        "{{ 'x' * 10**9 }}",
        "{{ 2 ** 100000000 }}",
        "{{ 2 ** 64 ** 64 ** 64 ** 64 }}",
        "{% for i in range(10**8) %}xxxxxxxxxxxxxxxx{% endfor %}",
    ):
        with pytest.raises(TemplateError):
            compile_template(HEAD + text)


def test_default_template_still_renders() -> None:
    subject, body = load_template(DEFAULT_TEMPLATE).render(
        {
            "sender": "s",
            "reference": "CS-1",
            "provider": provider_view("k", "Name", "NL"),
            "items": [],
            "round": 1,
            "escalation": False,
            "legal_basis": "law",
            "checked_at": "now",
            "renotify_hours": 24,
        }
    )
    assert subject == "Please remove child sexual abuse material hosted on your network"
    assert "Name (NL)" in body


def test_cli_refuses_a_bad_template_with_a_message(db: Database, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    one_item_per_provider(db, 1, now)
    bad = tmp_path / "bad.txt"
    bad.write_text(HEAD + "{{ cycler.__init__.__globals__.os.environ }}\n")
    env = {**os.environ, "CHILDSHIELD_DATABASE_URL": db.url, "CHILDSHIELD_NOTICE_TEMPLATE": str(bad)}
    cli = [sys.executable, "-m", "childshield.cli", "takedown"]
    checked = subprocess.run([*cli, "template", "--check", str(bad)], capture_output=True, text=True, env=env)
    assert checked.returncode == 1
    assert "refused" in checked.stderr and "Traceback" not in checked.stderr
    ran = subprocess.run([*cli, "run", "--once"], capture_output=True, text=True, env=env, timeout=120)
    assert ran.returncode == 1
    assert "cannot use the notice template" in ran.stderr and "Traceback" not in ran.stderr
    assert _noticed(db) == [0]
    good = subprocess.run(
        [*cli, "template", "--check", str(DEFAULT_TEMPLATE)], capture_output=True, text=True, env=env
    )
    assert good.returncode == 0, good.stderr
