"""Service settings, from arguments or ``CHILDSHIELD_*`` environment variables."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from childshield.review.intake import Intake
from childshield.review.keys import Keyring
from childshield.review.queue import DEFAULT_CLASSIFICATIONS
from childshield.review.wellness import BreakRules

if TYPE_CHECKING:
    from childshield.hashing.service import HashOptions

DEFAULT_MAX_UPLOAD = 50 * 1024 * 1024


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def _env_list(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = os.environ.get(name)
    return tuple(x.strip() for x in value.split(",") if x.strip()) if value else default


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    return default if not value else value in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ServiceSettings:
    database_url: str | None = None
    """None: ``$CHILDSHIELD_DATABASE_URL`` or the embedded SQLite default."""
    max_upload_bytes: int = field(
        default_factory=lambda: _env_int("CHILDSHIELD_MAX_UPLOAD", DEFAULT_MAX_UPLOAD)
    )
    refresh_seconds: float = 1.0
    """How often (at most) a worker checks the banks for changes; every change is seen within this."""
    max_lookup: int = 10_000
    """Signals per lookup request."""
    max_lookup_bytes: int = field(default_factory=lambda: _env_int("CHILDSHIELD_MAX_LOOKUP_BYTES", 6_000_000))
    """Bytes of a lookup's JSON body (``$CHILDSHIELD_MAX_LOOKUP_BYTES``), refused with 413 before it is
    parsed; the default fits ``max_lookup`` signals with every field at its longest."""
    max_json_bytes: int = field(default_factory=lambda: _env_int("CHILDSHIELD_MAX_JSON_BYTES", 32 << 20))
    """Bytes of any other JSON body (bank imports: ``$CHILDSHIELD_MAX_JSON_BYTES``), refused likewise."""
    decode_memory_mb: int = field(default_factory=lambda: _env_int("CHILDSHIELD_DECODE_MEMORY_MB", 2048))
    """Megabytes of decoded pictures a worker holds at once (``$CHILDSHIELD_DECODE_MEMORY_MB``), over API
    scans, URL scans and the crawler together: a decode waits until what its header says it needs is
    free, and one needing more than all of it is refused (422)."""
    decode_wait_seconds: float = field(default_factory=lambda: _env_float("CHILDSHIELD_DECODE_WAIT", 30.0))
    """How long an API scan waits for a scan thread and decode memory (``$CHILDSHIELD_DECODE_WAIT``)
    before it is answered 503 with ``Retry-After`` (the crawler waits as long as it takes)."""
    scan_threads: int = field(default_factory=lambda: _env_int("CHILDSHIELD_SCAN_THREADS", 8))
    """API scans hashed at once per worker (``$CHILDSHIELD_SCAN_THREADS``), in threads of their own: the
    rest wait without holding a thread, and health, readiness and the other endpoints keep theirs."""
    video_decoded_pixels: int | None = field(
        default_factory=lambda: _env_int("CHILDSHIELD_VIDEO_DECODED_PIXELS", 0) or None
    )
    """Pixels times frames a video upload may have decoded (``$CHILDSHIELD_VIDEO_DECODED_PIXELS``; none:
    ``media.video``'s default of 4e9, about 64 s of 1080p at 30 fps)."""
    webhook_url: str | None = field(default_factory=lambda: os.environ.get("CHILDSHIELD_WEBHOOK_URL") or None)
    """Where decisions are posted (signed with ``webhook_secret``); none: no webhooks."""
    webhook_secret: str = field(default_factory=lambda: os.environ.get("CHILDSHIELD_WEBHOOK_SECRET", ""))
    webhook_poll_seconds: float = 1.0
    scan_rate: float = field(default_factory=lambda: _env_float("CHILDSHIELD_SCAN_RATE", 2000.0))
    """Units of work per second per API key and worker for scans and lookups (``$CHILDSHIELD_SCAN_RATE``;
    0: no limit).  A request costs 1, a lookup 1 more per signal after the first, a scan 1 more per
    started ``work_unit_bytes`` uploaded and per started ``work_unit_pixels`` decoded."""
    scan_burst: float = field(default_factory=lambda: _env_float("CHILDSHIELD_SCAN_BURST", 20_000.0))
    """Units a key may spend at once (``$CHILDSHIELD_SCAN_BURST``); a request costing more is allowed on a
    full allowance only."""
    work_unit_bytes: int = 1 << 20
    work_unit_pixels: int = 1_000_000
    fetch_allow: str = field(default_factory=lambda: os.environ.get("CHILDSHIELD_FETCH_ALLOW", ""))
    """Networks ``/v1/scan/url`` may reach although not public (comma-separated CIDRs); none by default."""
    fetch_timeout: float = 20.0
    # The review queue
    review_actions: tuple[str, ...] = field(
        default_factory=lambda: _env_list("CHILDSHIELD_REVIEW_ACTIONS", ("review", "quarantine", "block"))
    )
    """Decisions whose content is queued for human review (confirmation before reporting)."""
    consensus: int = field(default_factory=lambda: _env_int("CHILDSHIELD_CONSENSUS", 2))
    """Independent reviewers who must agree (hotlines often use 3)."""
    classifications: tuple[str, ...] = field(
        default_factory=lambda: _env_list("CHILDSHIELD_CLASSIFICATIONS", DEFAULT_CLASSIFICATIONS)
    )
    negative_bank: str = field(
        default_factory=lambda: os.environ.get("CHILDSHIELD_NEGATIVE_BANK", "false-matches")
    )
    """Where the hashes of items rejected as false matches go ("" for nowhere)."""
    keep_media: bool = field(default_factory=lambda: _env_bool("CHILDSHIELD_KEEP_MEDIA", True))
    """Keep queued uploads (sealed with AES-GCM) so reviewers can see them."""
    media_retention_hours: float = field(
        default_factory=lambda: float(os.environ.get("CHILDSHIELD_MEDIA_RETENTION_HOURS", "336"))
    )
    media_key_file: str | None = field(default_factory=lambda: os.environ.get("CHILDSHIELD_MEDIA_KEY_FILE"))
    """None: ``media.keys`` next to the embedded database (see ``review.keys``)."""
    purge_every_seconds: float = 300.0
    crawl_worker: bool = field(default_factory=lambda: _env_bool("CHILDSHIELD_CRAWL_WORKER", False))
    """Run the crawler inside the service (fetches obey ``fetch_allow`` and ``fetch_timeout``)."""
    reporting_file: str | None = field(default_factory=lambda: os.environ.get("CHILDSHIELD_REPORTING_FILE"))
    """Destinations and routes of reports (docs/reporting.md); with ``[auto] enabled`` the service
    queues and sends reports of confirmed evidence by itself."""
    report_every_seconds: float = 60.0
    watch_local: bool = field(default_factory=lambda: _env_bool("CHILDSHIELD_WATCH_LOCAL", False))
    """Let ``/v1/watches`` open local files and capture devices (network streams only otherwise)."""
    # The web UI
    cookie_secure: bool = field(default_factory=lambda: _env_bool("CHILDSHIELD_COOKIE_SECURE", True))
    """Session cookies only over HTTPS (turn off only for plain-HTTP development on localhost)."""
    session_idle_minutes: float = 30.0
    session_max_hours: float = 12.0
    login_attempts_per_minute: float = 5.0
    """Per account name and per client address, each; a burst of as many is allowed."""
    break_every_items: int = 25
    break_every_minutes: float = 50.0
    """Offer a break after this many items or this long since the last one, whichever comes first."""
    break_fast_items: int = 10
    break_fast_minutes: float = 3.0
    """...or when this many verdicts come within this many minutes (a very fast pace; 0 items: never)."""
    metrics_open: bool = field(default_factory=lambda: _env_bool("CHILDSHIELD_METRICS_OPEN", False))
    """Serve ``/metrics`` without an API key (for a scraper on a private network); otherwise it needs an
    admin's key (its figures name the banks and the volumes)."""

    def hashing(self) -> HashOptions:
        """How a worker hashes what it scans: with a decode budget of its own (call once per worker)."""
        from childshield.hashing.service import HashOptions
        from childshield.media.decode import DecodeBudget
        from childshield.media.video import VideoLimits

        video = VideoLimits()
        if self.video_decoded_pixels:
            video = dataclasses.replace(video, max_decoded_pixels=self.video_decoded_pixels)
        return HashOptions(budget=DecodeBudget(self.decode_memory_mb * 1_000_000), video_limits=video)

    def break_rules(self) -> BreakRules:
        """When the review UI offers a break (``review.wellness``)."""
        return BreakRules(
            self.break_every_items, self.break_every_minutes, self.break_fast_items, self.break_fast_minutes
        )

    def intake(self, keyring: Keyring | None) -> Intake:
        """How content goes into the review queue under these settings."""
        return Intake(
            consensus=self.consensus,
            keep_media=self.keep_media,
            retention=dt.timedelta(hours=self.media_retention_hours),
            keyring=keyring,
        )

    # Findings 5 and 11 (issue 15): a busy database, and who sees settled reviews
    decision_patience_seconds: float = field(
        default_factory=lambda: float(os.environ.get("CHILDSHIELD_DECISION_PATIENCE_SECONDS", "60"))
    )
    """How long a matched upload's decision waits for a busy database (a long SQLite import) before the
    scan is answered 503 saying the decision was not recorded."""
    review_settled_roles: tuple[str, ...] = field(
        default_factory=lambda: _env_list("CHILDSHIELD_REVIEW_SETTLED_ROLES", ("admin",))
    )
    """Roles that may open settled items and see other reviewers' names and verdicts (``senior``
    to add senior reviewers); other reviewers see only what is waiting for them."""
