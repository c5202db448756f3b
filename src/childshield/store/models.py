"""Tables: banks of known hashes and their entries (signals with provenance, never media)."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[str]: JSON}


class BankKind(enum.StrEnum):
    NORMAL = "normal"
    NEGATIVE = "negative"
    """An allow-list: its matches suppress matches in other banks (known false positives)."""


class EntryState(enum.StrEnum):
    ACTIVE = "active"
    DISPUTED = "disputed"
    DISABLED = "disabled"


class SignalType(enum.StrEnum):
    PDQ = "pdq"
    MD5 = "md5"
    SHA1 = "sha1"
    SHA256 = "sha256"


DEFAULT_THRESHOLDS: dict[str, int] = {"pdq": 31}


class Bank(Base):
    __tablename__ = "banks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[BankKind] = mapped_column(
        Enum(BankKind, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]),
        default=BankKind.NORMAL,
    )
    enabled: Mapped[bool] = mapped_column(default=True)
    thresholds: Mapped[dict[str, Any]] = mapped_column(default=lambda: dict(DEFAULT_THRESHOLDS))
    description: Mapped[str] = mapped_column(Text, default="")
    policy: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    """Matching of edited copies (see ``banks.policy``); missing keys take the defaults."""
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    entries: Mapped[list[Entry]] = relationship(
        back_populates="bank", cascade="all, delete-orphan", lazy="raise"
    )


class Entry(Base):
    __tablename__ = "entries"
    __table_args__ = (
        # Re-running an import never duplicates: one row per signal per bank.
        UniqueConstraint("bank_id", "signal_type", "signal", name="uq_entry_signal"),
        Index("ix_entries_signal", "signal_type", "signal"),
        Index("ix_entries_bank_state", "bank_id", "state"),
        Index("ix_entries_revision", "revision"),
        Index("ix_entries_parent", "parent_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"))
    signal_type: Mapped[SignalType] = mapped_column(
        Enum(SignalType, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])
    )
    signal: Mapped[str] = mapped_column(String(128))
    quality: Mapped[int | None] = mapped_column(default=None)
    source: Mapped[str] = mapped_column(String(32), default="import")
    source_name: Mapped[str] = mapped_column(Text, default="")
    external_id: Mapped[str | None] = mapped_column(String(200), default=None)
    labels: Mapped[list[str]] = mapped_column(default=list)
    added_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    added_by: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[EntryState] = mapped_column(
        Enum(EntryState, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]),
        default=EntryState.ACTIVE,
    )
    state_reason: Mapped[str] = mapped_column(Text, default="")
    state_changed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    revision: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """The store revision that last wrote this entry (see ``store.revision``)."""
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("entries.id", ondelete="CASCADE", name="fk_entries_parent"), default=None
    )
    """For a variant (the hash of a standard edit of an item): the item's own PDQ entry."""
    variant: Mapped[str] = mapped_column(String(40), default="", server_default="")
    """Which edit a variant is (``crop6@0.25,0.5``, ``rotate+3``); empty for an item's own signals."""

    bank: Mapped[Bank] = relationship(back_populates="entries", foreign_keys=[bank_id])


class VideoFrame(Base):
    """A frame of a banked video (or an edit of one, a centred crop): which PDQ entry holds its hash, at
    which frame number and time.  One PDQ entry is stored once per bank, but may be a frame of several
    videos (and an image of its own): each video lists its frames here, so none loses a frame another
    item already holds."""

    __tablename__ = "video_frames"
    __table_args__ = (
        UniqueConstraint("item_id", "number", "variant", name="uq_video_frame"),
        Index("ix_video_frames_entry", "entry_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("entries.id", ondelete="CASCADE"))
    """The video: its SHA-256 entry (its MD5 and SHA-1 entries point to it)."""
    entry_id: Mapped[int] = mapped_column(ForeignKey("entries.id", ondelete="CASCADE"))
    """The PDQ entry holding the frame's hash."""
    number: Mapped[int] = mapped_column(Integer)
    """The frame's number in the video (decoded frames from 0, as vPDQ numbers them)."""
    timestamp: Mapped[float] = mapped_column(Float)
    quality: Mapped[int] = mapped_column(Integer)
    variant: Mapped[str] = mapped_column(String(40), default="", server_default="")
    """Empty for the frame itself, else the edit (``crop6@0.5,0.5``)."""


class StoreMeta(Base):
    """One row: the store's identity and revision counter (see ``store.revision``)."""

    __tablename__ = "store_meta"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance: Mapped[str] = mapped_column(String(36))
    revision: Mapped[int] = mapped_column(BigInteger, default=0)
    reset_revision: Mapped[int] = mapped_column(BigInteger, default=0)


class MatchTally(Base):
    """How many times an item matched in one hour (flood protection; see ``matching.flood``)."""

    __tablename__ = "match_tallies"

    entry_id: Mapped[int] = mapped_column(ForeignKey("entries.id", ondelete="CASCADE"), primary_key=True)
    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    """Hours since 1970-01-01 UTC."""
    count: Mapped[int] = mapped_column(Integer, default=0)


class LocalFeatures(Base):
    """Local features (``signals.orb``) of an item added from media, for the second check of near
    PDQ candidates: derived data, never the media itself."""

    __tablename__ = "local_features"
    __table_args__ = (Index("ix_local_features_bank", "bank_id"),)

    entry_id: Mapped[int] = mapped_column(ForeignKey("entries.id", ondelete="CASCADE"), primary_key=True)
    """The item's own PDQ entry."""
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Role(enum.StrEnum):
    ADMIN = "admin"
    """Everything: accounts, banks, policies, and what reviewers do."""
    SENIOR = "senior"
    """A reviewer who also settles disagreements (escalations)."""
    REVIEWER = "reviewer"
    """Reviews queued items."""
    SERVICE = "service"
    """A platform's API client: scans and lookups, nothing of the review queue."""
    CUSTODIAN = "custodian"
    """Keeps the evidence: lists it, places and lifts legal holds, queues and follows reports (media
    only ever leaves in signed bundles, from the command line)."""


class User(Base):
    """An account: a person (with a password) or a service (API keys only)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])
    )
    password_hash: Mapped[str | None] = mapped_column(Text, default=None)
    """argon2id; None for accounts that sign in with API keys only."""
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiKey(Base):
    """An API key, stored as its SHA-256 (keys are long random strings: a slow hash adds nothing)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    """The key's public part (shown in lists and logs) by which it is found."""
    key_hash: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class AuditHead(Base):
    """One row: the audit log's last sequence number and hash.  Updating it first serialises writers, so
    the chain never forks (on SQLite and PostgreSQL alike)."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64))


class AuditEvent(Base):
    """An append-only, hash-chained record of an action (see ``audit.log``)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class PolicyVersion(Base):
    """The banks' policy as it was when decisions were made (see ``actions.decisions``)."""

    __tablename__ = "policy_versions"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    """SHA-256 of the canonical JSON of ``banks``."""
    banks: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Decision(Base):
    """What was decided about content that matched, by which policy version (see ``actions.decisions``)."""

    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decisions_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_id: Mapped[str] = mapped_column(String(64), unique=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decision: Mapped[str] = mapped_column(String(16))
    policy_version: Mapped[str] = mapped_column(ForeignKey("policy_versions.version"))
    actor: Mapped[str] = mapped_column(String(200), default="")
    source: Mapped[str] = mapped_column(String(32), default="api")
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    pdq: Mapped[str | None] = mapped_column(String(64), default=None)
    matches: Mapped[list[Any]] = mapped_column(JSON, default=list)
    context: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """Where the content came from when not from an upload (e.g. the crawler's page and media URLs)."""
    suppressed: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    """Matches an allow-list cleared (each with the entry that did), shown to reviewers beside ``matches``."""


class WebhookDelivery(Base):
    """The outbox of webhook calls: written with the decision, delivered (and retried) apart from it, so a
    failing receiver never loses or delays a decision; after the last try it stays here as dead."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_due", "state", "next_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    """The exact JSON body sent (and signed)."""
    state: Mapped[str] = mapped_column(String(16), default="pending")
    """pending, delivered or dead."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class KeptMedia(Base):
    """Uploaded media kept for review, sealed with AES-GCM (see ``review.media``): the key lives outside the
    database, the nonce and the key's id beside the ciphertext, and the row is deleted when it expires."""

    __tablename__ = "kept_media"
    __table_args__ = (Index("ix_kept_media_expires", "expires_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_id: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    key_id: Mapped[str] = mapped_column(String(32))
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))


class ReviewState(enum.StrEnum):
    PENDING = "pending"
    """Waiting for independent reviews."""
    ESCALATED = "escalated"
    """Reviewers disagreed (or one escalated): a senior reviewer settles it."""
    CONFIRMED = "confirmed"
    """Confirmed as known material (with a classification): goes on to reporting."""
    REJECTED = "rejected"
    """A false match: its hash goes to the negative bank."""


class ReviewItem(Base):
    """Matched content queued for human review (see ``review.queue``): one item per content while it is
    open, however often it is seen (each sighting a ``ReviewSighting``)."""

    __tablename__ = "review_items"
    __table_args__ = (
        Index("ix_review_items_state", "state", "id"),
        # At most one open item per content: concurrent sightings fold by insert-or-update on this.
        Index("uq_review_items_open_key", "open_key", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id", ondelete="CASCADE"), unique=True)
    content_id: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    state: Mapped[ReviewState] = mapped_column(
        Enum(ReviewState, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]),
        default=ReviewState.PENDING,
    )
    required: Mapped[int] = mapped_column(Integer, default=2)
    """Agreeing independent reviews needed (the consensus setting when the item was queued)."""
    classification: Mapped[str | None] = mapped_column(String(32), default=None)
    settled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    media_id: Mapped[int | None] = mapped_column(
        ForeignKey("kept_media.id", ondelete="SET NULL"), default=None
    )
    open_key: Mapped[str | None] = mapped_column(String(64), default=None)
    """The content's SHA-256 while the item is open (pending or escalated), None once settled: the
    key repeats of the same content fold on."""
    sightings: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    """How many times the content was seen (matched uploads or crawler finds) while the item was open."""
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class ReviewSighting(Base):
    """One sighting of an item's content: the decision that saw it (with its context: who uploaded it,
    from where, in which incident), kept for the report to a clearinghouse."""

    __tablename__ = "review_sightings"
    __table_args__ = (Index("ix_review_sightings_item", "item_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id", ondelete="CASCADE"))
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id", ondelete="CASCADE"), unique=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Review(Base):
    """One reviewer's verdict on an item; one per reviewer and item (reviews are independent)."""

    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("item_id", "user_id"),
        Index("ix_reviews_user_at", "user_id", "at"),  # a reviewer's pace (``review.wellness``)
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    verdict: Mapped[str] = mapped_column(String(16))
    """confirm, reject or escalate."""
    classification: Mapped[str | None] = mapped_column(String(32), default=None)
    note: Mapped[str] = mapped_column(Text, default="")
    ruling: Mapped[bool] = mapped_column(default=False)
    """A senior reviewer's ruling on an escalated item: it settles the item."""
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Reveal(Base):
    """A reviewer chose to see an item's media unblurred (each reveal also an audit record)."""

    __tablename__ = "reveals"
    __table_args__ = (Index("ix_reveals_item_session", "item_id", "session_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    session_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebSession(Base):
    """A signed-in browser: the cookie holds a random token, the table only its SHA-256."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    seen_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    reviewed: Mapped[int] = mapped_column(Integer, default=0)
    """Items reviewed in this session (shown to the reviewer)."""
    since_break: Mapped[int] = mapped_column(Integer, default=0)
    """Items reviewed since the last break (the break prompt counts these)."""
    break_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    """When the reviewer last took (or was last offered) a break."""
    blur: Mapped[int] = mapped_column(Integer, default=24)
    """The blur radius this reviewer chose for unrevealed media (pixels at 512 wide)."""
    flash: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """A verdict form that failed (item, error, what was chosen), shown once by the item's page after the
    redirect: a reload never sends the form again, and the reviewer's choice is kept."""


class CrawlState(enum.StrEnum):
    QUEUED = "queued"
    LEASED = "leased"
    """Being fetched; a crawler that died holding it loses the lease when ``leased_until`` passes."""
    DONE = "done"
    FAILED = "failed"
    """Gave up after retries (the error says why)."""
    SKIPPED = "skipped"
    """Out of bounds when its turn came (site cap, patience, depth)."""


class CrawlUrl(Base):
    """The crawl frontier and its results: one row per URL (page or media), fetched at most once."""

    __tablename__ = "crawl_urls"
    __table_args__ = (
        Index("ix_crawl_next", "state", "priority", "depth", "id"),
        Index("ix_crawl_lease", "state", "leased_until"),
        Index("ix_crawl_site", "site"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    url_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """SHA-256 of the normalised URL: the frontier's de-duplication key."""
    site: Mapped[str] = mapped_column(String(255))
    depth: Mapped[int] = mapped_column(Integer, default=0)
    hint: Mapped[str] = mapped_column(String(8), default="page")
    """How it was found: ``page`` (a link or a reported URL) or ``media`` (an image source); what it is
    is decided by its content when fetched."""
    seed: Mapped[bool] = mapped_column(default=False)
    priority: Mapped[int] = mapped_column(Integer, default=1)
    """Claimed in this order: 0 for media (a page's images are checked before more pages are opened),
    1 for pages; then the shallowest, then the oldest."""
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("crawl_urls.id", ondelete="SET NULL"), default=None
    )
    source: Mapped[str] = mapped_column(String(200), default="")
    reporter_ref: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[CrawlState] = mapped_column(
        Enum(CrawlState, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]),
        default=CrawlState.QUEUED,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    leased_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    added_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    fetched_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    status: Mapped[int | None] = mapped_column(Integer, default=None)
    kind: Mapped[str] = mapped_column(String(8), default="")
    """What the content was: ``page``, ``media`` or ``other``."""
    final_url: Mapped[str | None] = mapped_column(Text, default=None)
    size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    error: Mapped[str] = mapped_column(Text, default="")
    cause: Mapped[str] = mapped_column(String(32), default="")
    """Why it failed, or why it waits to be tried again (``refused``, ``dns``, ``timeout``, ``network``,
    ``http-503`` ...; see ``net.hops``): counted by ``crawl status``, chosen by ``crawl requeue``."""
    matched: Mapped[bool] = mapped_column(default=False)


class CrawlSite(Base):
    """Per-site crawl counters: pages fetched, matches, and pages since the last match (patience)."""

    __tablename__ = "crawl_sites"

    site: Mapped[str] = mapped_column(String(255), primary_key=True)
    pages: Mapped[int] = mapped_column(Integer, default=0)
    media: Mapped[int] = mapped_column(Integer, default=0)
    matches: Mapped[int] = mapped_column(Integer, default=0)
    since_match: Mapped[int] = mapped_column(Integer, default=0)


class CrawlHit(Base):
    """Known material found: the media URL, the page it was on, the entry it matched, its hashes."""

    __tablename__ = "crawl_hits"
    __table_args__ = (UniqueConstraint("url_id", "bank", "item_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url_id: Mapped[int] = mapped_column(ForeignKey("crawl_urls.id", ondelete="CASCADE"))
    page_id: Mapped[int | None] = mapped_column(
        ForeignKey("crawl_urls.id", ondelete="SET NULL"), default=None
    )
    media_url: Mapped[str] = mapped_column(Text)
    page_url: Mapped[str | None] = mapped_column(Text, default=None)
    host: Mapped[str] = mapped_column(String(255))
    ip: Mapped[str] = mapped_column(String(45), default="")
    """The address the media was fetched from (whose network hosts it)."""
    bank: Mapped[str] = mapped_column(String(100))
    entry_id: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[int] = mapped_column(Integer)
    check: Mapped[str] = mapped_column(String(16))
    distance: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    md5: Mapped[str] = mapped_column(String(32))
    pdq: Mapped[str | None] = mapped_column(String(64), default=None)
    found_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Provider(Base):
    """A hosting provider (an RDAP organisation or network) and where its notices go."""

    __tablename__ = "providers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    """The RDAP handle of the registrant organisation (else of the network)."""
    name: Mapped[str] = mapped_column(String(300), default="")
    country: Mapped[str] = mapped_column(String(2), default="")
    abuse_email: Mapped[str] = mapped_column(String(320), default="")
    """From RDAP (refreshed with the lookup)."""
    contact_override: Mapped[str] = mapped_column(String(320), default="")
    """Set by an analyst: used instead of ``abuse_email``."""
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def contact(self) -> str:
        return self.contact_override or self.abuse_email


class IpLookup(Base):
    """Cached RDAP answers: which provider's network holds an address."""

    __tablename__ = "ip_lookups"

    ip: Mapped[str] = mapped_column(String(45), primary_key=True)
    network: Mapped[str] = mapped_column(String(64), default="")
    provider_id: Mapped[int | None] = mapped_column(
        ForeignKey("providers.id", ondelete="SET NULL"), default=None
    )
    error: Mapped[str] = mapped_column(Text, default="")
    cause: Mapped[str] = mapped_column(String(32), default="")
    """Why the last lookup failed (``unreachable``, ``not-found``, ``http-503``, ``malformed`` ...)."""
    looked_up_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TakedownState(enum.StrEnum):
    ONLINE = "online"
    REMOVED = "removed"


class TakedownItem(Base):
    """A media URL found hosting known material, followed until it is gone."""

    __tablename__ = "takedown_items"
    __table_args__ = (Index("ix_takedown_due", "state", "next_check_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    url_hash: Mapped[str] = mapped_column(String(64), unique=True)
    page_url: Mapped[str | None] = mapped_column(Text, default=None)
    host: Mapped[str] = mapped_column(String(255))
    ip: Mapped[str] = mapped_column(String(45), default="")
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("providers.id"), default=None)
    hit_id: Mapped[int | None] = mapped_column(ForeignKey("crawl_hits.id", ondelete="SET NULL"), default=None)
    bank: Mapped[str] = mapped_column(String(100))
    item_id: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    md5: Mapped[str] = mapped_column(String(32))
    pdq: Mapped[str | None] = mapped_column(String(64), default=None)
    found_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[TakedownState] = mapped_column(
        Enum(TakedownState, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]),
        default=TakedownState.ONLINE,
    )
    removed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    removal: Mapped[str] = mapped_column(String(32), default="")
    """How it was seen gone: http-404, http-410, http-451, changed (``unreachable`` in older records)."""
    first_notice_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    last_notice_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    notices: Mapped[int] = mapped_column(Integer, default=0)
    escalated_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    next_check_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_checked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    """Re-checks in a row that proved nothing (our fetch failed, or the host refused): never a removal."""
    last_error: Mapped[str] = mapped_column(String(200), default="")
    """Why the last re-check proved nothing ("" after a check that got an answer)."""
    last_cause: Mapped[str] = mapped_column(String(32), default="")
    """The cause of ``last_error`` in one word (``refused``, ``dns``, ``http-503`` ...), for counting."""
    reupload_of: Mapped[int | None] = mapped_column(ForeignKey("takedown_items.id"), default=None)
    """An earlier, removed item with the same content: this is a re-upload."""


class Notice(Base):
    """A removal notice to one provider about some items: planned once, sent once (``takedown.notices``)."""

    __tablename__ = "notices"
    __table_args__ = (Index("ix_notices_state", "state", "next_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    round: Mapped[int] = mapped_column(Integer, default=1)
    """1 for the first notice about these items, 2 for the first reminder, ..."""
    escalation: Mapped[bool] = mapped_column(default=False)
    to_addr: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(200), unique=True)
    items: Mapped[list[Any]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    """queued, sending (handed to SMTP, not yet confirmed), sent, failed."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")
    cause: Mapped[str] = mapped_column(String(32), default="")
    """Why the last try failed (``smtp-unreachable``, ``smtp-starttls``, ``recipient-refused`` ...)."""


class Evidence(Base):
    """Material confirmed by review, preserved for the legal period (see ``vault``): the media sealed
    with AES-GCM (keys outside the database), its hashes and what was known of it.  When its time is
    over (and no legal hold keeps it) the media and metadata are deleted; the row stays as a tombstone
    with the hashes and the time and reason of the deletion."""

    __tablename__ = "evidence"
    __table_args__ = (Index("ix_evidence_retain", "retain_until"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int | None] = mapped_column(
        ForeignKey("review_items.id", ondelete="SET NULL"), unique=True
    )
    content_id: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    pdq: Mapped[str | None] = mapped_column(String(64), default=None)
    classification: Mapped[str | None] = mapped_column(String(32), default=None)
    preserved_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    retain_until: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    hold: Mapped[str] = mapped_column(Text, default="")
    """A legal hold's reason: while set, nothing is deleted whatever ``retain_until`` says."""
    key_id: Mapped[str | None] = mapped_column(String(32), default=None)
    nonce: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    """The media, sealed; None when none was kept, or once deleted."""
    size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """The decision, matches, verdicts and context; None once deleted."""
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    deleted_reason: Mapped[str] = mapped_column(Text, default="")


class Report(Base):
    """A report to a clearinghouse and where its submission stands (see ``reporting.outbox``)."""

    __tablename__ = "reports"
    __table_args__ = (Index("ix_reports_state", "state", "next_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    destination: Mapped[str] = mapped_column(String(32), default="cybertipline")
    state: Mapped[str] = mapped_column(String(16), default="queued")
    """queued, open (submitted, files going up), finishing, done, failed."""
    remote_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """The clearinghouse's report id (NCMEC's reportId) once submitted."""
    document: Mapped[str] = mapped_column(Text)
    """The report XML, as built and validated when queued."""
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    next_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    done_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    request_id: Mapped[str | None] = mapped_column(String(100), default=None)
    """The clearinghouse's id of its latest answer about this report (NCMEC's ``Request-ID`` header):
    what their support desk asks for."""


class ReportFile(Base):
    """A file of a report: which evidence, and how far its upload got."""

    __tablename__ = "report_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"))
    evidence_id: Mapped[int] = mapped_column(ForeignKey("evidence.id"))
    file_name: Mapped[str] = mapped_column(String(300))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    """pending, uploading (sent, answer not recorded), uploaded, described."""
    remote_file_id: Mapped[str | None] = mapped_column(String(100), default=None)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """What goes in the file's fileDetails besides the ids (hashes, location, viewed ...)."""
