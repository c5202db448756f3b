"""Kill `childshield takedown send` (SIGKILL) at random moments, then let it finish: every notice arrives,
and one arrives twice only if the kill fell between the server's acceptance and our record of it (then
with the same Message-ID, and the notice shows the second attempt)."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from childshield.store.db import Database
from childshield.store.models import Notice
from childshield.takedown.notices import NoticeSettings, plan
from smtp_helpers import SmtpServer
from takedown_helpers import one_item_per_provider
from waiting import HANG_GUARD, exited, wait_until

PROVIDERS = 24


def seed(db: Database) -> list[int]:
    now = dt.datetime.now(dt.UTC)
    one_item_per_provider(db, PROVIDERS, now)
    return plan(db, NoticeSettings(from_addr="notices@hotline.test"), now=now)


def test_killed_sender_loses_nothing(db: Database, tmp_path: Path) -> None:
    rng = random.Random(11)
    planned = seed(db)
    assert len(planned) == PROVIDERS
    with SmtpServer(tmp_path, delay=0.08) as smtp:
        env = {
            **os.environ,
            "CHILDSHIELD_SMTP_PORT": str(smtp.port),
            "CHILDSHIELD_SMTP_CA_FILE": str(smtp.cert),
            "CHILDSHIELD_NOTICE_FROM": "notices@hotline.test",
        }
        command = [sys.executable, "-m", "childshield.cli", "takedown", "send", "--db", db.url]
        kills = 0
        for _ in range(4):
            # Killed a random number of notices into its sending (counted, not timed: load moves times),
            # a random moment into the next one's exchange.
            target = len(smtp.mailbox.messages) + rng.randint(1, 4)
            proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_until(
                lambda: len(smtp.mailbox.messages) >= target or proc.poll() is not None,  # noqa: B023
                "the sender to send its share before the kill",
            )
            time.sleep(rng.uniform(0, 0.1))  # where in the next exchange: any point will do
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
            exited(proc, "the killed sender")
            with db.session() as session:  # what a dead sender held is free again after its lease
                session.query(Notice).filter(Notice.state == "sending").update(
                    {"next_at": dt.datetime.now(dt.UTC)}
                )
        assert kills >= 2, "the sender finished before it could be killed"
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=HANG_GUARD)
        assert done.returncode == 0, done.stderr
        received = Counter(m["Message-ID"] for m in smtp.mailbox.messages)
    with db.session() as session:
        notices = session.scalars(select(Notice)).all()
        assert all(n.state == "sent" for n in notices)
        assert set(received) == {n.message_id for n in notices}  # none lost
        twice = {mid for mid, count in received.items() if count > 1}
        retried = {n.message_id for n in notices if n.attempts > 1}
        assert twice <= retried and len(twice) <= kills  # at most the one in flight at each kill
        assert all(count <= 2 for count in received.values())
