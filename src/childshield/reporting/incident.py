"""What a report says, gathered from the evidence vault: the facts of each piece of evidence, and
evidence grouped into incidents (one report per incident, as NCMEC asks of providers).

An incident is what the platform named one (the scan's ``incident`` key), else everything one account
uploaded (``user_id``), else everything found on one page (crawl finds), else the file alone.  A file the
review queue saw several times (its sightings) goes in the incident of each sighting, with that
sighting's context."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from childshield.reporting import context as ctx
from childshield.reporting.cybertip import CSAM, AccountDisabled, IpEvent
from childshield.store.models import Evidence, Reveal
from childshield.timefmt import aware


@dataclass(frozen=True)
class Sighting:
    submitted_by: str
    context: dict[str, str]
    at: dt.datetime


@dataclass(frozen=True)
class EvidenceFacts:
    evidence_id: int
    content_id: str
    sha256: str
    md5: str
    pdq: str
    classification: str | None
    banks: frozenset[str]
    labels: frozenset[str]
    source: str
    decided_at: dt.datetime
    preserved_at: dt.datetime
    context: dict[str, str]
    viewed: bool
    """A reviewer revealed the whole file (a person at our end saw it)."""
    has_media: bool
    submitted_by: str = ""
    """The API client that scanned it: incidents of two platforms never merge."""
    sightings: tuple[Sighting, ...] = ()
    """Every time the review queue saw the file (one upload each), when it kept them."""

    def per_incident(self) -> list[EvidenceFacts]:
        """The file as it goes in each incident its sightings belong to (itself, without sightings)."""
        if not self.sightings:
            return [self]
        keyed: dict[str, list[Sighting]] = {}
        for s in self.sightings:
            seen = dataclasses.replace(self, context=s.context, submitted_by=s.submitted_by, sightings=())
            keyed.setdefault(seen.incident_key, []).append(s)
        return [
            dataclasses.replace(
                self,
                context=group[0].context,
                submitted_by=group[0].submitted_by,
                decided_at=group[0].at,
                sightings=tuple(group),
            )
            for group in keyed.values()
        ]

    @property
    def incident_key(self) -> str:
        c, who = self.context, self.submitted_by
        if c.get("incident"):
            return f"{who}/incident:{c['incident']}"
        if c.get("user_id"):
            return f"{who}/user:{c['user_id']}"
        if c.get("page_url"):
            return f"page:{c['page_url']}"
        return f"evidence:{self.evidence_id}"

    @property
    def location(self) -> str:
        return self.context.get("location") or self.context.get("media_url") or ""

    @property
    def third_party(self) -> bool:
        """Found on another company's service (the crawler), not uploaded to ours."""
        return self.source == "crawl" or bool(self.context.get("page_url"))

    @property
    def original_name(self) -> str:
        """The name the user uploaded the file under (the platform's ``file_name``, or a multipart
        upload's), else the last segment of the URL the file itself was fetched from; '' if unknown."""
        given = ctx.upload_name(self.context.get("file_name"))
        return given or ctx.name_in_url(self.context.get("media_url", ""))

    @property
    def uploaded_at(self) -> dt.datetime | None:
        return ctx.when(self.context, "uploaded_at")

    @property
    def exif_viewed(self) -> bool | None:
        return ctx.flag(self.context, "exif_viewed")

    @property
    def annotations(self) -> tuple[str, ...]:
        """File annotations: the context's, and ``liveStreaming`` for what a stream watch caught."""
        found = ctx.tags(self.context, "file_annotations")
        return tuple(dict.fromkeys(found + (("liveStreaming",) if self.source == "watch" else ())))

    @property
    def upload_ip(self) -> IpEvent | None:
        """The IP address the file was uploaded from, when the platform said that was the event."""
        if not self.context.get("ip") or ctx.choice(self.context, "ip_event") != "Upload":
            return None
        return IpEvent(self.context["ip"], "Upload", ctx.when(self.context, "ip_at"))


@dataclass(frozen=True)
class IncidentFacts:
    key: str
    files: Sequence[EvidenceFacts] = field(default_factory=tuple)
    given_urls: Sequence[str] = ()
    """URLs a person gave for the incident (instead of what the evidence knows)."""
    given_third_party: bool | None = None
    given_at: dt.datetime | None = None
    """The incident's time as a person gave it (the files keep their own times)."""

    @property
    def at(self) -> dt.datetime:
        return self.given_at or min(f.decided_at for f in self.files)

    @property
    def urls(self) -> list[str]:
        if self.given_urls:
            return list(dict.fromkeys(self.given_urls))
        found = [f.context.get("page_url") or f.location for f in self.files]
        return list(dict.fromkeys(u for u in found if u))

    @property
    def user_id(self) -> str:
        return next((f.context["user_id"] for f in self.files if f.context.get("user_id")), "")

    @property
    def screen_name(self) -> str:
        return next((f.context["screen_name"] for f in self.files if f.context.get("screen_name")), "")

    @property
    def ips(self) -> list[tuple[str, dt.datetime | None]]:
        """(address, when the user used it, if the platform said) of ``ip_events``."""
        return [(e.address, e.at) for e in self.ip_events]

    @property
    def ip_events(self) -> list[IpEvent]:
        """Every IP address kept with the files' scans, each with the event and the time the platform
        gave (else ``Unknown`` and no time: the scan's time is not the user's)."""
        seen: dict[tuple[str, str, dt.datetime | None], IpEvent] = {}
        for f in self.files:
            for context in [s.context for s in f.sightings] or [f.context]:
                ip = context.get("ip")
                if ip:
                    event = IpEvent(
                        ip, ctx.choice(context, "ip_event") or "Unknown", ctx.when(context, "ip_at")
                    )
                    seen.setdefault((event.address, event.event, event.at), event)
        return list(seen.values())

    @property
    def contexts(self) -> list[dict[str, str]]:
        return [f.context for f in self.files]

    @property
    def annotations(self) -> list[str]:
        """Report annotations: those of any file's context."""
        return ctx.distinct(t for c in self.contexts for t in ctx.tags(c, "report_annotations"))

    @property
    def escalate(self) -> str:
        return "\n".join(ctx.distinct(c.get("escalate", "").strip() for c in self.contexts))

    @property
    def display_names(self) -> list[str]:
        return ctx.distinct(c.get("display_name", "") for c in self.contexts)

    @property
    def profile_urls(self) -> list[str]:
        return ctx.distinct(c.get("profile_url", "") for c in self.contexts)

    @property
    def service(self) -> str:
        return ctx.first(self.contexts, "service")

    @property
    def account_disabled(self) -> AccountDisabled | None:
        """What the platform did to the account (from the first context that says)."""
        for c in self.contexts:
            how = ctx.choice(c, "account_disabled")
            if how:
                return AccountDisabled(
                    permanently=how == "permanently",
                    at=ctx.when(c, "account_disabled_at"),
                    user_notified=ctx.flag(c, "user_notified"),
                    notified_at=ctx.when(c, "user_notified_at"),
                )
        return None

    @property
    def incident_type(self) -> str:
        """NCMEC's incident type: a person's choice when queuing by hand, else known material's."""
        return next((t for c in self.contexts if (t := ctx.choice(c, "incident_type"))), CSAM)

    @property
    def kind(self) -> str:
        """How the material went (``context.KINDS``): the first kind a file's context names."""
        return next((k for c in self.contexts if (k := ctx.choice(c, "incident_kind"))), "web_page")

    @property
    def third_party(self) -> bool:
        if self.given_third_party is not None:
            return self.given_third_party
        return all(f.third_party for f in self.files)


def _context(details: dict[str, Any]) -> dict[str, str]:
    context = details.get("context") or {}
    return {str(k): str(v) for k, v in context.items() if isinstance(v, str | int) and str(v)}


def _in_chunks(session: Session, query: Any, column: Any, ids: list[int]) -> set[int]:
    found: set[int] = set()
    for i in range(0, len(ids), 500):
        found.update(session.scalars(query.where(column.in_(ids[i : i + 500]))))
    return found


def _facts(session: Session, live: Sequence[Evidence]) -> list[EvidenceFacts]:
    """The facts of live evidence rows (their media deferred: it is never read here)."""
    with_media = _in_chunks(
        session, select(Evidence.id).where(Evidence.sealed.is_not(None)), Evidence.id, [r.id for r in live]
    )
    items = [r.item_id for r in live if r.item_id is not None]
    revealed = _in_chunks(session, select(Reveal.item_id).distinct(), Reveal.item_id, items)
    out = []
    for row in live:
        details = row.details or {}
        matches = details.get("matches") or []
        viewed = row.item_id is not None and row.item_id in revealed
        decided = details.get("decided_at")
        out.append(
            EvidenceFacts(
                evidence_id=row.id,
                content_id=row.content_id,
                sha256=details.get("media_sha256") or row.sha256 or "",
                md5=details.get("media_md5") or "",
                pdq=row.pdq or "",
                classification=row.classification,
                banks=frozenset(str(m.get("bank")) for m in matches if m.get("bank")),
                labels=frozenset(str(label) for m in matches for label in m.get("labels") or ()),
                source=str(details.get("source") or ""),
                decided_at=aware(dt.datetime.fromisoformat(decided)) if decided else aware(row.preserved_at),
                preserved_at=aware(row.preserved_at),
                context=_context(details),
                viewed=viewed,
                has_media=row.id in with_media,
                submitted_by=str(details.get("submitted_by") or ""),
                sightings=tuple(_sightings(details.get("sightings") or [], row.preserved_at)),
            )
        )
    return out


def _sightings(rows: list[dict[str, Any]], fallback: dt.datetime) -> Iterable[Sighting]:
    for row in rows:
        at = row.get("at")
        when = aware(dt.datetime.fromisoformat(at)) if at else aware(fallback)
        yield Sighting(str(row.get("submitted_by") or ""), _context(row), when)


def evidence_facts(session: Session, ids: Sequence[int] | None = None) -> list[EvidenceFacts]:
    """The facts of live evidence (all, or of ``ids``), read without the media."""
    query = (
        select(Evidence)
        .options(defer(Evidence.sealed))
        .where(Evidence.deleted_at.is_(None))
        .order_by(Evidence.id)
    )
    if ids is not None:
        query = query.where(Evidence.id.in_(ids))
    return _facts(session, session.scalars(query).all())


def incidents(files: Iterable[EvidenceFacts]) -> list[IncidentFacts]:
    """Evidence grouped into incidents, in order of each incident's first evidence."""
    groups: dict[str, list[EvidenceFacts]] = {}
    for file in files:
        for f in file.per_incident():
            groups.setdefault(f.incident_key, []).append(f)
    return [IncidentFacts(key, tuple(group)) for key, group in groups.items()]
