"""Layers: dependencies point inward (issue 17.6; docs/development.md, "Layers").

Every module of ``childshield`` is parsed (not imported) and each of its imports is read, wherever it is
written: at the top, inside a function (a lazy import), under ``if TYPE_CHECKING:``, and the two ways a
module is named in a string (``importlib.import_module("...")`` and a ``"module:attribute"`` reference, as
uvicorn's factory or an entry point takes).  Imports are grouped by top-level package: ``crawl``, ``net``,
``store`` ..., a top-level module (``timefmt``, ``mail``) is its own group, ``childshield/__init__`` is
``childshield``, and the front doors are ``cli`` (``cli.py``, ``cli_*.py``, a ``cli/`` package) and
``web``.  The tree fails on:

* a cycle between groups;
* a core group importing a front door (the core never knows who calls it);
* a front door importing another's insides (the CLI may name ``web.app``, to serve it; web never
  imports the CLI);
* a private name (``_x``) imported from outside the module or package that owns it.

``KNOWN`` lists the imports that break a rule today, each saying what must move; an entry that no longer
breaks a rule fails the test too, so the list only shrinks.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import childshield

SRC = Path(childshield.__file__).parent
FRONT_DOORS = frozenset({"cli", "web"})
SERVED = frozenset({"childshield.web.app"})
"""What the CLI may import from web: the app factory, which ``childshield serve`` starts."""

_SETTINGS = "ServiceSettings is read by the CLI: it moves to the one settings registry (issue 17.3)"
_CLI_OPTIONS = "the CLI's shared options and database opener move to one module of cli/ (issue 17.6)"
KNOWN: Mapping[tuple[str, str], str] = {
    ("childshield.cli_crawl", "childshield.web.settings"): _SETTINGS,
    ("childshield.cli_service", "childshield.web.settings"): _SETTINGS,
    **{
        (f"childshield.{cli}", "childshield.cli_bank._database"): _CLI_OPTIONS
        for cli in (
            "cli_crawl",
            "cli_match",
            "cli_report",
            "cli_review",
            "cli_scan",
            "cli_service",
            "cli_takedown",
            "cli_vault",
            "cli_watch",
        )
    },
    ("childshield.cli_takedown", "childshield.cli_crawl._resolver"): _CLI_OPTIONS,
    ("childshield.cli_report", "childshield.cli_vault._keyring"): _CLI_OPTIONS,
    ("childshield.web.api.banks", "childshield.web.api.scan._body"): (
        "reading a bounded upload body is shared by the API's routes: it moves to a public web.api helper"
    ),
}


@dataclass(frozen=True)
class Import:
    importer: str
    module: str
    """The module imported from (always one of the tree's modules)."""
    name: str | None
    """The name taken from ``module`` (None when the module itself is imported)."""
    line: int

    @property
    def where(self) -> str:
        what = f"{self.module}.{self.name}" if self.name else self.module
        return f"{self.importer} (line {self.line}) imports {what}"


def modules(root: Path) -> dict[str, Path]:
    """Dotted name to file, for the package at ``root`` (its folder)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _extensions(root: Path) -> set[str]:
    """Compiled modules (``_pdqcore``): a ``.c`` beside them, or the built library."""
    out = set()
    for path in root.rglob("_*"):
        if path.suffix in (".c", ".so", ".pyd"):
            parts = [*path.relative_to(root.parent).parent.parts, path.name.split(".")[0]]
            out.add(".".join(parts))
    return out


def _named_in_strings(tree: ast.AST) -> Iterable[tuple[str, int]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called == "import_module" and isinstance(node.args[0].value, str):
                yield node.args[0].value, node.lineno
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and ":" in node.value:
            module, _, attr = node.value.partition(":")
            if module.isascii() and all(p.isidentifier() for p in module.split(".")) and attr.isidentifier():
                yield module, node.lineno


def imports(root: Path) -> list[Import]:
    """Every import of the package at ``root`` of one of its own modules."""
    package = root.name
    tree_modules = modules(root)
    known = set(tree_modules) | _extensions(root)
    found = []

    def resolve(importer: str, dotted: str, name: str | None, line: int) -> None:
        if name is not None and f"{dotted}.{name}" in known:
            dotted, name = f"{dotted}.{name}", None
        while dotted not in known and "." in dotted:  # ``import a.b.attr`` or a name we cannot see
            dotted = dotted.rsplit(".", 1)[0]
        if dotted in known:
            found.append(Import(importer, dotted, name, line))

    for module, path in tree_modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        here = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == package:
                        resolve(module, alias.name, None, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                if source.split(".")[0] == package:
                    for alias in node.names:
                        resolve(module, source, alias.name, node.lineno)
        for named, line in _named_in_strings(tree):
            if named.split(".")[0] == package and named in known:
                resolve(module, named, None, line)
    return found


def group(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return parts[0]
    return "cli" if parts[1] == "cli" or parts[1].startswith("cli_") else parts[1]


def _private_owner(imp: Import) -> str | None:
    """The module or package a private name belongs to, if ``imp`` takes one."""
    parts = imp.module.split(".") + ([imp.name] if imp.name else [])
    for k, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:k])
    return None


def rules(imp: Import, served: frozenset[str] = SERVED) -> list[str]:
    """What ``imp`` breaks, cycles aside."""
    broken = []
    a, b = group(imp.importer), group(imp.module)
    if a not in FRONT_DOORS and b in FRONT_DOORS:
        broken.append(f"the core ({a}) imports a front door: {imp.where}")
    if a in FRONT_DOORS and b in FRONT_DOORS and a != b and not (a == "cli" and imp.module in served):
        broken.append(f"a front door imports another's insides: {imp.where}")
    owner = _private_owner(imp)
    if owner is not None and imp.importer != owner and not imp.importer.startswith(owner + "."):
        broken.append(f"a private name is taken from outside {owner}: {imp.where}")
    return broken


def key(imp: Import, *, named: bool) -> tuple[str, str]:
    return imp.importer, f"{imp.module}.{imp.name}" if named and imp.name else imp.module


def _cycles(found: list[Import]) -> list[list[Import]]:
    """One cycle of imports through each strongly connected set of groups (Tarjan's algorithm)."""
    edges: dict[str, dict[str, Import]] = defaultdict(dict)
    for imp in found:
        a, b = group(imp.importer), group(imp.module)
        if a != b:
            edges[a].setdefault(b, imp)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    sets: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            members = set()
            while True:
                w = stack.pop()
                members.add(w)
                if w == v:
                    break
            if len(members) > 1:
                sets.append(members)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    out = []
    for members in sets:  # the shortest way back from one member to itself, inside the set
        start = min(members)
        paths: dict[str, list[Import]] = {start: []}
        queue = [start]
        while queue:
            v = queue.pop(0)
            for w, imp in sorted(edges.get(v, {}).items()):
                if w == start:
                    out.append([*paths[v], imp])
                    queue = []
                    break
                if w in members and w not in paths:
                    paths[w] = [*paths[v], imp]
                    queue.append(w)
    return out


@dataclass
class Findings:
    broken: list[str]
    stale: list[str]


def check(root: Path, known: Mapping[tuple[str, str], str], *, served: frozenset[str] = SERVED) -> Findings:
    found = imports(root)
    broken, breaking = [], set()
    for imp in found:
        said = rules(imp, served)
        if said:
            breaking.add(key(imp, named=_private_owner(imp) is not None))
        if said and key(imp, named=True) not in known and key(imp, named=False) not in known:
            broken += said
    for cycle in _cycles(found):  # a KNOWN import inside a cycle holds it open until it moves
        breaking |= {key(imp, named=False) for imp in cycle}
    kept = [imp for imp in found if key(imp, named=False) not in known]
    for cycle in _cycles(kept):
        way = " -> ".join([group(cycle[0].importer), *(group(imp.module) for imp in cycle)])
        broken.append(f"a cycle between packages, {way}: " + "; ".join(imp.where for imp in cycle))
    stale = [f"{a} -> {b}: {why}" for (a, b), why in known.items() if (a, b) not in breaking]
    return Findings(broken, stale)


def test_the_layers_hold() -> None:
    findings = check(SRC, KNOWN)
    assert not findings.broken, "\n".join(findings.broken)
    assert not findings.stale, "no longer breaks a rule, remove it from KNOWN:\n" + "\n".join(findings.stale)


def test_no_core_package_imports_web() -> None:
    """The aim of 17.6, said on its own: not even a KNOWN entry lets the core reach ``web``."""
    found = [imp for imp in imports(SRC) if group(imp.importer) not in FRONT_DOORS]
    assert not [imp.where for imp in found if group(imp.module) == "web"]
    assert len(found) > 500  # the walk saw the tree (a broken walk would pass the line above)


def _tree(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_walk_finds_a_cycle_through_a_lazy_relative_import(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "a/__init__.py": "from pkg.b.x import thing\n",
            "b/__init__.py": "",
            "b/x.py": "def thing():\n    from ..a import y\n    return y\n",  # pkg.b.x -> pkg.a
            "c.py": "import pkg.a\n",
        },
    )
    findings = check(pkg, {})
    assert len(findings.broken) == 1 and "a cycle between packages, a -> b -> a" in findings.broken[0]
    assert "pkg.b.x (line 2) imports pkg.a" in findings.broken[0]
    known = {("pkg.b.x", "pkg.a"): "y moves into b"}
    assert check(pkg, known).broken == []  # a KNOWN import no longer closes the cycle
    (pkg / "b" / "x.py").write_text("def thing():\n    return 1\n")
    assert check(pkg, known).stale == ["pkg.b.x -> pkg.a: y moves into b"]


def test_the_walk_finds_doors_and_privates_however_imported(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "core/__init__.py": "",
            "core/a.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from pkg.web.app import App\n"
                "_helper = 1\n"
            ),
            "core/b.py": "import importlib\nmod = importlib.import_module('pkg.cli_x')\n",
            "core/_inner.py": "",
            "core/c.py": "from pkg.core import _inner\nfrom pkg.core.a import _helper as h\n",
            "web/__init__.py": "",
            "web/app.py": "FACTORY = 'pkg.core.a:App'\n",
            "web/routes.py": "from pkg.cli_x import run\n",
            "cli_x.py": "def run():\n    import pkg.web.app\n    from pkg.web import routes\n",
            "other.py": "from pkg.core import _inner\nfrom pkg.core.a import aware as _aware\n",
        },
    )
    broken = "\n".join(check(pkg, {}, served=frozenset({"pkg.web.app"})).broken)
    assert "the core (core) imports a front door: pkg.core.a (line 3) imports pkg.web.app.App" in broken
    assert "the core (core) imports a front door: pkg.core.b (line 2) imports pkg.cli_x" in broken
    assert "a front door imports another's insides: pkg.web.routes (line 1) imports pkg.cli_x.run" in broken
    assert "pkg.cli_x (line 3) imports pkg.web.routes" in broken  # but not pkg.web.app: that one is SERVED
    assert "a cycle between packages, cli -> web -> cli" in broken
    assert "from outside pkg.core.a: pkg.core.c (line 2) imports pkg.core.a._helper" in broken
    assert "from outside pkg.core: pkg.other (line 1) imports pkg.core._inner" in broken
    assert "pkg.core.c (line 1)" not in broken  # a private module of its own package
    assert "pkg.other (line 2)" not in broken  # a public name, renamed private
    assert "pkg.web.app (line 1)" not in broken  # web may name the core in a string
