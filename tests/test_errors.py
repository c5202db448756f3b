"""One error tree: every exception class of childshield under ``ChildshieldError``, answered once by the
API (its category's status, headers and ``{"detail": ...}``) and once by the command line (its message,
printed as it is, and its category's exit status)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import childshield
from childshield.banks.errors import BankExists, BankNotFound
from childshield.cli_app import App
from childshield.errors import (
    CATEGORIES,
    Busy,
    ChildshieldError,
    Conflict,
    Invalid,
    NotFound,
    Refused,
    Unavailable,
    category_of,
)
from childshield.store.db import open_database
from childshield.web.app import create_app
from childshield.web.settings import ServiceSettings

NOT_IMPORTABLE_ALONE = {"childshield.store.migrations.env"}  # Alembic's script: runs inside Alembic only
MARKUP = "bank [red]x[/] :smile: [/y]"  # Rich would read this as markup (or fail on it): printed as it is


def _our_exceptions() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(childshield.__path__, "childshield."):
        if module_info.name in NOT_IMPORTABLE_ALONE:
            continue
        module = importlib.import_module(module_info.name)
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[name] for name in sorted(found)]


OURS = _our_exceptions()


def test_the_walk_finds_the_exception_classes() -> None:
    names = {cls.__name__ for cls in OURS}
    assert {"BankNotFound", "MediaError", "FetchError", "AccountConflict", "ChildshieldError"} <= names
    assert len(OURS) > 45


@pytest.mark.parametrize("cls", OURS, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_every_exception_class_is_in_the_tree(cls: type[BaseException]) -> None:
    assert issubclass(cls, ChildshieldError), f"{cls.__qualname__} is not under ChildshieldError"
    # A category named on the class itself is the one that answers it: `class X(BankError, NotFound)`
    # would be answered as BankError's category, which is not what it says.
    named = [base for base in cls.__bases__ if base in CATEGORIES]
    if named:
        assert category_of(cls) is named[0], f"{cls.__qualname__}: name {named[0].__name__} first"


def test_builtins_callers_catch_are_kept() -> None:
    from childshield.crawl.urls import BadUrl
    from childshield.store.db import DatabaseMissing
    from childshield.stream.hls import HlsError
    from childshield.textcheck import UnsafeText

    assert issubclass(BadUrl, ValueError) and issubclass(UnsafeText, ValueError)
    assert issubclass(DatabaseMissing, LookupError) and issubclass(HlsError, OSError)


def test_members_of_a_family_map_by_their_own_category() -> None:
    from childshield.accounts.service import AccountConflict, AccountError, AccountNotFound
    from childshield.banks.errors import BankError, InvalidBankSetting
    from childshield.media.errors import FileTooLarge
    from childshield.stream.manager import WatchError, WatchNotFound
    from childshield.vault.store import EvidenceDeleted, EvidenceNotFound, VaultError

    assert category_of(BankError) is Invalid and category_of(InvalidBankSetting) is Invalid
    assert category_of(BankNotFound) is NotFound and category_of(BankExists) is Conflict
    assert category_of(AccountError) is Invalid and category_of(AccountNotFound) is NotFound
    assert category_of(AccountConflict) is Conflict
    assert category_of(VaultError) is Invalid and category_of(EvidenceNotFound) is NotFound
    assert category_of(EvidenceDeleted) is Conflict
    assert category_of(WatchError) is Invalid and category_of(WatchNotFound) is NotFound
    assert category_of(FileTooLarge) is Invalid  # an upload's pixels or bytes: 422, as before


# The HTTP mapping: a real request through the real app, to a route that raises.

EXPECTED_HTTP = [
    (NotFound, 404),
    (Conflict, 409),
    (Invalid, 422),
    (Refused, 422),
    (Busy, 503),
    (Unavailable, 503),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("errors")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("XDG_DATA_HOME", str(folder / "data"))  # nothing written to the home folder
        app = create_app(ServiceSettings(database_url=f"sqlite:///{folder / 'test.db'}", refresh_seconds=0))
        _add_raising_route(app)
        with TestClient(app, raise_server_exceptions=False) as c:
            yield c


RAISED: dict[str, ChildshieldError] = {}


def _add_raising_route(app: FastAPI) -> None:
    def boom(name: str) -> None:
        raise RAISED[name]

    app.add_api_route("/v1/test-raise/{name}", boom, methods=["GET"])


@pytest.mark.parametrize(("category", "status"), EXPECTED_HTTP, ids=lambda v: getattr(v, "__name__", str(v)))
def test_each_category_has_its_status_and_detail(
    client: TestClient, category: type[ChildshieldError], status: int
) -> None:
    RAISED[category.__name__] = category(MARKUP)
    answer = client.get(f"/v1/test-raise/{category.__name__}")
    assert answer.status_code == status
    assert answer.json() == {"detail": MARKUP}
    assert ("retry-after" in answer.headers) is (category is Busy)


def test_busy_says_when_to_try_again(client: TestClient) -> None:
    from childshield.actions.decisions import DecisionNotRecorded
    from childshield.media.decode import DecodeBusy

    RAISED["decode"] = DecodeBusy("decode memory taken", retry_after=2.4)
    assert client.get("/v1/test-raise/decode").headers["retry-after"] == "3"
    RAISED["decision"] = DecisionNotRecorded("c1", "review", "database is locked")
    answer = client.get("/v1/test-raise/decision")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "10"


def test_a_fault_of_the_service_is_a_500_that_keeps_its_message(client: TestClient) -> None:
    from childshield.review.keys import KeyFileError

    RAISED["root"] = KeyFileError("/srv/secret/media.keys:3: expected 'KEY_ID BASE64'")
    answer = client.get("/v1/test-raise/root")
    assert answer.status_code == 500
    assert answer.json() == {"detail": "internal error: the service's log has the cause"}
    assert "secret" not in answer.text


def test_real_endpoints_answer_through_the_handler(client: TestClient) -> None:
    from childshield.accounts.service import create_api_key, create_user
    from childshield.store.models import Role

    db = client.app.state.db  # type: ignore[attr-defined]
    create_user(db, "admin-e", Role.ADMIN, password="correct horse battery")
    key = {"Authorization": f"Bearer {create_api_key(db, 'admin-e')}"}
    missing = client.get("/v1/banks/missing", headers=key)
    assert missing.status_code == 404 and missing.json() == {"detail": "no bank named 'missing'"}
    assert client.post("/v1/banks", json={"name": "one"}, headers=key).status_code == 201
    taken = client.post("/v1/banks", json={"name": "one"}, headers=key)
    assert taken.status_code == 409 and taken.json() == {"detail": "a bank named 'one' already exists"}
    nobody = client.get("/v1/accounts/nobody", headers=key)
    assert nobody.status_code == 404 and set(nobody.json()) == {"detail"}
    create_user(db, "custodian-e", Role.CUSTODIAN, password="correct horse battery")
    custodian = {"Authorization": f"Bearer {create_api_key(db, 'custodian-e')}"}
    gone = client.put("/v1/evidence/999/hold", json={"reason": "case 1"}, headers=custodian)
    assert gone.status_code == 404 and gone.json() == {"detail": "no evidence 999"}


# The command-line mapping.


def _app_raising(error: ChildshieldError) -> typer.Typer:
    app = App()

    @app.callback()
    def _root() -> None:
        """A group, as the childshield command is."""

    @app.command()
    def boom() -> None:
        raise error

    return app


@pytest.mark.parametrize("category", CATEGORIES, ids=lambda c: c.__name__)
def test_each_category_has_its_exit_status_and_message(category: type[ChildshieldError]) -> None:
    result = CliRunner().invoke(_app_raising(category(MARKUP)), ["boom"])
    assert result.exit_code == category.exit_code == 1
    assert result.stderr == f"error: {MARKUP}\n"
    assert result.stdout == ""


def test_the_command_says_a_missing_bank_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'banks.db'}"
    open_database(url, create=True).close()
    command = [sys.executable, "-m", "childshield.cli", "bank", "show", MARKUP, "--db", url]
    ran = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert ran.returncode == BankNotFound.exit_code == 1
    assert ran.stderr == f"error: no bank named {MARKUP!r}\n"
    assert ran.stdout == ""
