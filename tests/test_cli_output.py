"""What the command line prints: user data exactly as it is (Rich markup, emoji codes and brackets in
names, paths, descriptions and CSV cells), help that reads as written, shell completion, tables that
mark what they cut, and ``--format vpdq`` only where it means something (issue 16, items 6 and 17)."""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from childshield.cli import app
from childshield.testing.corpus import encode, generated_photo
from pty_run import run_on_terminal

SRC = Path(__file__).resolve().parents[1] / "src" / "childshield"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
runner = CliRunner()

# Pieces that Rich would read as markup or emoji codes, or that escaping gets wrong (backslashes).
TRICKY = ["[", "]", "[/x]", "[b]", "[/]", "[exchange]", "[red]", "[link=x]", "\\", "\\[", "[b]\\", ":cat:"]
PLAIN = ["a", "Z", "0", "é", "-", "_", ".", " "]


def tricky_text(*, max_pieces: int = 6) -> st.SearchStrategy[str]:
    """Text with at least one piece Rich would misread; no leading or trailing space (a table's cell
    does not keep them)."""
    pieces = st.lists(st.sampled_from(TRICKY + PLAIN), min_size=0, max_size=max_pieces)
    return st.tuples(pieces, st.sampled_from(TRICKY), pieces).map(
        lambda t: "".join([*t[0], t[1], *t[2]]).strip()
    )


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback (e.g. rich.errors.MarkupError) is the failure
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('cli-output') / 'cli.db'}"
    old = os.environ.get("CHILDSHIELD_DATABASE_URL")
    os.environ["CHILDSHIELD_DATABASE_URL"] = url
    code, _, err = invoke("bank", "create", "known")
    assert code == 0, err
    yield url
    if old is None:
        del os.environ["CHILDSHIELD_DATABASE_URL"]
    else:
        os.environ["CHILDSHIELD_DATABASE_URL"] = old


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=tricky_text(), description=tricky_text(), cell=tricky_text(), file_name=tricky_text())
def test_names_descriptions_cells_and_paths_are_printed_exactly(
    db_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    description: str,
    cell: str,
    file_name: str,
) -> None:
    # A bank name: refused or not found, the message says it as given.
    code, _, err = invoke("bank", "show", "--", name)
    assert code == 1 and f"error: no bank named {name[:120]!r}" in err
    # [exchange] in a message does not disappear.
    code, _, err = invoke("bank", "import", "known", f"--exchange={name}")
    assert code == 1 and f"error: unknown exchange {name[:60]!r}" in err
    # A description in a table (a Rich table cell).
    assert invoke("bank", "set", "known", f"--description={description}")[0] == 0
    code, out, _ = invoke("bank", "list", "--format", "table")
    assert code == 0 and description in out
    # A CSV cell quoted back in the report of skipped rows, from a file whose name is tricky too.
    folder = tmp_path_factory.mktemp("lists")
    listing = folder / f"{file_name}.csv"  # "[/x]" in a path: a folder "[" holding "x]..."
    listing.parent.mkdir(parents=True, exist_ok=True)
    quoted = cell.replace('"', '""')
    listing.write_text(f'signal_type,signal\n"{quoted}",abc\n', encoding="utf-8")
    code, _, err = invoke("bank", "import", "known", str(listing))
    assert code == 1 and f"skipped line 2: unknown signal type {cell[:40]!r}" in err
    # A path that cannot be read.
    missing = folder / f"missing {file_name}.csv"
    code, _, err = invoke("bank", "import", "known", str(missing))
    assert code == 1 and f"error: cannot read {missing}: " in err


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(tricky_text(max_pieces=4), min_size=3, max_size=5, unique=True))
def test_file_names_are_printed_exactly_by_hash_add_and_scan(
    db_url: str, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, names: list[str]
) -> None:
    names = [n for n in names if n not in (".", "..")]
    folder = tmp_path_factory.mktemp("files")
    monkeypatch.chdir(folder)  # short relative paths: a table's path column keeps each on one line
    picture = f"copy {names[0]}.jpg"
    others = [f"{n}.txt" for n in names[1:]]
    for made in (picture, *others):  # "[/x]" in a path: a folder "[" holding "x]..."
        Path(made).parent.mkdir(parents=True, exist_ok=True)
    Path(picture).write_bytes(encode(generated_photo(7, 96, 96), "JPEG", quality=90))
    for other in others:
        Path(other).write_text("not an image\n")

    code, out, _ = invoke("hash", "--format", "table", "--workers", "1", picture)
    assert code == 0 and picture in out
    # Files that are not images are each reported, by their names as they are.
    code, _, err = invoke("bank", "add", "known", "--workers", "1", "--", picture, *others)
    assert code == 1
    for other in others:
        assert f"skipped {other}: not a recognised image format" in err
    code, out, err = invoke("scan", "--format", "table", "--workers", "1", picture)
    assert code == 3 and picture in out, err


# --- the guard: no command-line module may print user data through markup ------------------------

MARKUP_TAG = re.compile(r"\[/?[A-Za-z#@][^\[\]]*\]|\[/\]")
PRINTING = {"print", "log", "status", "update", "rule", "input"}


def markup_problems(source: str, name: str) -> list[str]:
    """Where ``source`` (a command-line module) could print user data as Rich markup, or styles text
    through markup that its consoles (markup off) would print as it is."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "rich.markup" and name != "cli_app.py":
            problems.append(f"{name}:{node.lineno}: rich.markup (escape prints backslashes: use say/Text)")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = (
            func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        )
        if called == "Console" and name != "cli_output.py":
            problems.append(f"{name}:{node.lineno}: a Console of its own (use cli_output.console)")
        if called in ("from_markup", "render_markup"):
            problems.append(f"{name}:{node.lineno}: {called}")
        if called == "TextColumn" and not any(
            k.arg == "markup" and isinstance(k.value, ast.Constant) and k.value.value is False
            for k in node.keywords
        ):
            problems.append(f"{name}:{node.lineno}: TextColumn without markup=False")
        for keyword in node.keywords:
            if keyword.arg == "markup" and isinstance(keyword.value, ast.Constant) and keyword.value.value:
                problems.append(f"{name}:{node.lineno}: markup=True")
        if called in PRINTING and node.args:
            first = node.args[0]
            parts = first.values if isinstance(first, ast.JoinedStr) else [first]
            text = "".join(p.value for p in parts if isinstance(p, ast.Constant) and isinstance(p.value, str))
            if MARKUP_TAG.search(text):
                problems.append(f"{name}:{node.lineno}: markup in a message (use say(label=..., style=...))")
    return problems


def command_line_modules() -> list[Path]:
    return [*sorted(SRC.glob("cli*.py")), SRC / "hashing" / "output.py"]


def test_no_command_line_module_prints_through_markup() -> None:
    problems = [p for path in command_line_modules() for p in markup_problems(path.read_text(), path.name)]
    assert not problems, "\n".join(problems)


def test_the_guard_finds_what_it_is_for() -> None:
    """The guard itself: each way user data used to reach Rich markup is found."""
    found = markup_problems(
        "from rich.markup import escape\n"
        "err = Console(stderr=True)\n"
        'err.print(f"[red]error:[/] {exc}")\n'
        'err.print(f"{path}", markup=True)\n'
        'Progress(TextColumn("{task.description}"))\n'
        "Text.from_markup(name)\n",
        "cli_new.py",
    )
    assert len(found) == 6, found


# --- help ---------------------------------------------------------------------------------------


def _commands() -> list[list[str]]:
    import typer

    root = typer.main.get_command(app)
    found: list[list[str]] = [[]]

    def walk(group: object, path: list[str]) -> None:
        # Through the group's own API: the root's commands are imported when asked for (cli_app.LazyGroup).
        if not isinstance(group, typer.core.TyperGroup):
            return
        ctx = typer.Context(group)
        for sub_name in group.list_commands(ctx):
            found.append([*path, sub_name])
            walk(group.get_command(ctx, sub_name), [*path, sub_name])

    walk(root, [])
    return found


def test_help_of_every_command_reads_as_written() -> None:
    commands = _commands()
    assert len(commands) > 40
    for path in commands:
        code, out, _ = invoke(*path, "--help")
        assert code == 0, path
        assert "<bool>" not in out, path  # a flag takes no value
        assert "``" not in out, path  # reST literals are shown as `x`
    _, out, _ = invoke("report", "auto", "--help")
    assert "[auto].enabled" in " ".join(out.split())  # brackets in help are not markup
    _, out, _ = invoke("hash", "--help")
    assert "`--format vpdq`" in " ".join(out.replace("│", " ").split())


# --- shell completion ---------------------------------------------------------------------------


def test_shell_completion(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import shellingham

    # The user's shell, as Typer finds it from the process tree: which one runs the tests varies (none
    # is found under some runners, and Typer then prints "Shell  not supported").
    monkeypatch.setattr(shellingham, "detect_shell", lambda: ("bash", "/bin/bash"))

    def run(*args: str, env: dict[str, str] | None = None) -> str:
        result = runner.invoke(app, list(args), env=env, prog_name="childshield")
        assert result.exit_code == 0 and result.exception is None, result.output
        return result.stdout

    assert "_CHILDSHIELD_COMPLETE" in run("--show-completion", "bash")  # the script to source
    assert "--install-completion" in run("--help")

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        return run(
            env={
                "_CHILDSHIELD_COMPLETE": "complete_bash",
                "COMP_WORDS": line,
                "COMP_CWORD": str(len(words) - 1),
            }
        ).split()

    assert complete("childshield ba") == ["bank"]
    assert "import" in complete("childshield bank im")
    assert complete("childshield bank show kno") == ["known"]  # bank names from the database
    # Completing against a database that does not exist offers nothing and creates nothing.
    nowhere = Path(db_url.removeprefix("sqlite:///")).with_name("nowhere.db")
    assert complete(f"childshield bank show --db sqlite:///{nowhere} kno") == []
    assert not nowhere.exists()


# --- formats and tables -------------------------------------------------------------------------


def test_vpdq_is_offered_only_where_it_means_something(db_url: str) -> None:
    for args in (["bank", "list"], ["scan", "."]):
        code, _, err = invoke(*args, "--format", "vpdq")
        assert code == 2 and "vpdq" in err, args
    assert "vpdq" not in " ".join(invoke("bank", "list", "--help")[1].split())
    assert "|vpdq>" in invoke("hash", "--help")[1]  # the choices, wrapped in their column


def test_a_table_too_wide_for_the_terminal_ends_cut_cells_with_an_ellipsis(
    db_url: str, tmp_path: Path
) -> None:
    long = "a-description-far-longer-than-any-column-of-a-narrow-terminal-could-hold"
    assert invoke("bank", "set", "known", f"--description={long}")[0] == 0
    picture = tmp_path / "picture-with-a-long-name-to-fold.jpg"
    picture.write_bytes(encode(generated_photo(8, 96, 96), "JPEG", quality=90))
    env = {**os.environ, "CHILDSHIELD_DATABASE_URL": db_url}
    for args in (["bank", "list"], ["hash", "--workers", "1", str(picture)]):
        seen = run_on_terminal(*args, "--format", "table", env=env, stream="stdout", columns=60)
        assert seen.returncode == 0, seen.piped
        text = ANSI.sub("", seen.terminal).replace("\r", "")
        lines = [line for line in text.split("\n") if line.strip()]
        assert lines and all(len(line) <= 60 for line in lines), text
        # Every line keeps the table's right edge: nothing is cut off without a mark.
        assert all(line.rstrip()[-1] in "┓┃┩│┘" for line in lines), text
        if args[0] == "bank":
            assert "a-d…" in text or "a-…" in text  # the description is cut, and marked as cut
        else:
            first_column = "".join(line.split("│")[1].strip() for line in lines if line.startswith("│"))
            assert picture.name in first_column  # a path folds onto more lines: all of it is there
