"""``childshield watch``: watch live streams (or files played in real time) for known material."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from typing import Annotated

import typer

from childshield.cli_bank import DbOption, _database
from childshield.cli_match import EXIT_MATCHED
from childshield.cli_output import say


def watch_command(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="rtmp://, rtsp://, srt://, http(s)://…m3u8, tcp://, udp:// URLs, files, devices."
        ),
    ],
    stream_id: Annotated[
        list[str] | None, typer.Option("--stream-id", help="An id per source, in order (default: made up).")
    ] = None,
    fps: Annotated[float, typer.Option(min=0.01, max=30, help="Frames hashed per second.")] = 1.0,
    realtime: Annotated[
        bool, typer.Option("--realtime", help="Play files at their own speed, as if broadcast.")
    ] = False,
    input_format: Annotated[
        str | None, typer.Option("--input-format", help="FFmpeg input format (x11grab, mpegts…).")
    ] = None,
    read_timeout: Annotated[float, typer.Option(min=0.5, help="Seconds without data: stalled.")] = 10.0,
    max_reconnects: Annotated[
        int | None, typer.Option(min=0, help="Give a source up after this many failures in a row.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Watch streams until they end (files), Ctrl-C, or SIGTERM: alerts are printed as JSON Lines and
    recorded as decisions (with their webhooks when CHILDSHIELD_WEBHOOK_URL is set).  Exit status 3 when
    anything matched."""
    import os

    from childshield.matching.holder import MatcherHolder
    from childshield.media.video import Sampling
    from childshield.stream.manager import WatchError, Watches
    from childshield.stream.watch import Alert, WatchConfig

    ids = list(stream_id or [])
    if ids and len(ids) != len(sources):
        raise typer.BadParameter("give one --stream-id per source, or none")
    config = WatchConfig(
        sampling=Sampling(rate=fps),
        realtime=realtime,
        format=input_format,
        read_timeout=read_timeout,
        max_reconnects=max_reconnects,
    )
    alerts = 0
    lock = threading.Lock()

    def printed(alert: Alert, decision_id: int) -> None:
        nonlocal alerts
        row = {
            "stream_id": alert.stream_id,
            "stream_time": round(alert.stream_time, 3),
            "decision_id": decision_id,
            "matches": [m.as_dict() for m in alert.matches],
        }
        with lock:
            alerts += 1
            sys.stdout.write(json.dumps(row) + "\n")
            sys.stdout.flush()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with _database(db) as database:
        holder = MatcherHolder(database, refresh_seconds=5.0)
        holder.run(lambda m: None)  # load the index before the first frame arrives
        watches = Watches(
            database, holder, webhook_url=os.environ.get("CHILDSHIELD_WEBHOOK_URL"), config=config,
            on_alert=printed,
        )  # fmt: skip
        try:
            for n, source in enumerate(sources):
                watches.start(source, ids[n] if ids else None)
        except WatchError as exc:
            watches.close()
            raise typer.BadParameter(str(exc)) from None
        seen: dict[str, str] = {}
        try:
            while not stop.is_set():
                statuses = watches.statuses()
                for s in statuses:
                    if seen.get(s.stream_id) != s.state:
                        seen[s.stream_id] = s.state
                        note = f": {s.error}" if s.error and s.state != "running" else ""
                        say(f"{s.stream_id}: {s.state}{note}")
                if statuses and all(s.state in ("ended", "failed", "stopped") for s in statuses):
                    break
                stop.wait(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            watches.close()
        time.sleep(0)
    raise typer.Exit(EXIT_MATCHED if alerts else 0)
