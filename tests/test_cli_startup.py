"""The command starts without its subcommands' stacks (issue 17.7): an import test, not a timing test."""

from __future__ import annotations

import json
import subprocess
import sys

import typer
import typer.main

from childshield.cli import _COMMANDS, app
from childshield.cli_app import help_text

# What `--version` and `--help` must not pull in: the hashing stack, the database, the web service, images,
# and Rich's console machinery (the root's --help needs Rich to print; --version needs none of it).
HEAVY = ("numpy", "sqlalchemy", "fastapi", "PIL", "cv2", "av", "httpx", "childshield.hashing")


_DRIVER = """
import json, sys
sys.argv = ["childshield", *json.loads(sys.argv[1])]
from childshield.cli import main
try:
    main()
except SystemExit:
    pass
print("\\nMODULES " + json.dumps(sorted(sys.modules)))
"""


ROOT_MODULES = {"childshield.cli_app", "childshield.cli_errors"}
"""What the root group itself needs: the lazy group and the one error mapping (typer and errors only)."""


def _imported(*args: str) -> set[str]:
    """Modules loaded by ``childshield ARGS``: those ``python -X importtime`` lists, and ``sys.modules`` at
    the end (importtime leaves out modules imported through ``importlib.import_module``)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", _DRIVER, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    timed = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "imported package" not in line
    }
    assert "typer" in timed  # the list is real
    listed = result.stdout.rsplit("MODULES ", 1)[1]
    return timed | set(json.loads(listed))


def _heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)}


def test_version_imports_no_subcommand_stack_and_no_rich() -> None:
    modules = _imported("--version")
    assert "childshield.cli" in modules
    assert _heavy(modules) == set()
    assert {m for m in modules if m == "rich" or m.startswith("rich.")} == set()
    assert not any(m.startswith("childshield.cli_") and m not in ROOT_MODULES for m in modules)


def test_help_imports_no_subcommand_stack() -> None:
    modules = _imported("--help")
    assert _heavy(modules) == set()
    assert "rich.progress" not in modules
    assert not any(m.startswith("childshield.cli_") and m not in ROOT_MODULES for m in modules)


def test_a_command_imports_its_module_when_it_runs_or_shows_help() -> None:
    modules = _imported("bank", "--help")
    assert "childshield.cli_bank" in modules
    assert "childshield.cli_crawl" not in modules  # only the command asked for


def test_import_childshield_is_light() -> None:
    code = "import json, sys, childshield; childshield.__version__; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    modules = set(json.loads(result.stdout))
    assert _heavy(modules) == set()
    check = (
        "import childshield, sys; childshield.PdqHash; "
        "print('numpy' in sys.modules, 'hash_file' in dir(childshield))"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["True", "True"]  # the public names still load on use


def test_each_command_summary_is_the_first_paragraph_of_its_own_help() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    ctx = typer.Context(root)
    assert root.list_commands(ctx) == list(_COMMANDS)
    for name, spec in _COMMANDS.items():
        command = root.get_command(ctx, name)
        assert command is not None and command.name == name
        own = (command.help or "").split("\n\n")[0]
        assert help_text(spec.summary) == own, name


def test_the_quick_head_is_alembics_head() -> None:
    from childshield.store import migrate

    assert migrate.quick_head() == migrate.head_revision()


def test_opening_a_database_at_the_head_imports_no_alembic(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'cs.db'}"
    code = (
        "import json, sys; from childshield.store.db import open_database; "
        "open_database(sys.argv[1]).close(); print(json.dumps(sorted(sys.modules)))"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True, timeout=120)
        for _ in range(2)
    ]
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr[-2000:]
    first, again = (set(json.loads(r.stdout)) for r in runs)
    assert "alembic" in first  # a new database is migrated by Alembic
    assert "alembic" not in again  # one at the head is told so from alembic_version alone
