"""``childshield review`` and ``childshield media``: the review queue's state and the media kept for it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from childshield.cli_app import App
from childshield.cli_bank import DbOption, _database
from childshield.cli_output import err

review_app = App(
    help="The human review queue (reviewers work in the web UI of `serve`).", no_args_is_help=True
)
media_app = App(help="Uploads kept (sealed) for review: keys, re-sealing, retention.", no_args_is_help=True)
KeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="The media key file (default: $CHILDSHIELD_MEDIA_KEY_FILE or media.keys "
        "next to the embedded database).",
    ),
]


@review_app.command("status")
def review_status(db: DbOption = None) -> None:
    """Items per state (pending, escalated, confirmed, rejected) as JSON."""
    from childshield.review.queue import counts

    with _database(db) as database:
        sys.stdout.write(json.dumps(counts(database)) + "\n")


@review_app.command("list")
def review_list(
    state: Annotated[str, typer.Option(help="pending, escalated, confirmed or rejected.")] = "confirmed",
    since: Annotated[int, typer.Option(help="Items after this id.")] = 0,
    db: DbOption = None,
) -> None:
    """Settled (or waiting) items as JSON Lines: what reporting takes on (hashes, never media)."""
    from childshield.review.queue import settled_items
    from childshield.store.models import ReviewState

    try:
        wanted = ReviewState(state)
    except ValueError:
        raise typer.BadParameter(
            f"one of {', '.join(s.value for s in ReviewState)}", param_hint="--state"
        ) from None
    with _database(db) as database:
        for row in settled_items(database, wanted, since=since):
            sys.stdout.write(json.dumps(row) + "\n")


@media_app.command("purge")
def media_purge(db: DbOption = None) -> None:
    """Delete kept media past its retention (the service also does this every few minutes)."""
    from childshield.review.media import purge_expired

    with _database(db) as database:
        gone = purge_expired(database, actor="cli")
    err.print(f"deleted {gone} expired media")


@media_app.command("rotate-key")
def media_rotate_key(key_file: KeyFileOption = None) -> None:
    """Add a new current key (older keys stay to open what they sealed; run `media reseal` next)."""
    from childshield.review.keys import rotate

    key_id = rotate(key_file)
    err.print(f"new current key {key_id}; restart the service so every worker seals with it")


@media_app.command("reseal")
def media_reseal(key_file: KeyFileOption = None, db: DbOption = None) -> None:
    """Re-seal kept media with the current key (after `rotate-key`), so old keys can be retired."""
    from childshield.review.keys import Keyring
    from childshield.review.media import reseal

    keyring = Keyring.load(key_file, create=False)
    with _database(db) as database:
        count = reseal(database, keyring, actor="cli")
    err.print(f"re-sealed {count} media with key {keyring.current}")
