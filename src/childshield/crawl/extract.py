"""Find links and media in HTML, whatever state it is in (the parser never raises on broken markup).

Media: ``img`` (``src``, ``srcset``, lazy-loading ``data-*`` sources), ``picture``/``source``, ``video``
(``src``, ``poster``) and its ``source``, ``a href`` to media files and gallery/lightbox links
(``data-full``, ``data-large``, ``data-lightbox``, ``data-fancybox`` ...), Open Graph and Twitter images,
``link rel=image_src``, and ``url(...)`` in inline styles and ``<style>`` blocks.  Links: ``a href``,
``area href``, ``iframe``/``frame src``.  ``<base href>`` is honoured.  Output is bounded.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from childshield.crawl.urls import BadUrl, normalize

MEDIA_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif",
    ".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi",
)  # fmt: skip
MAX_LINKS = 5000
LAZY_ATTRS = (
    "data-src",
    "data-original",
    "data-lazy",
    "data-lazy-src",
    "data-url",
    "data-hi-res",
    "data-zoom",
)
GALLERY_ATTRS = ("data-full", "data-large", "data-image", "data-href", "data-big", "data-fullsize")
_CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'"()]{1,2000})\1\s*\)""", re.IGNORECASE)
_SRCSET_SPLIT = re.compile(r"(?<=\s\d[wx]),|(?<=\d[wx]),|,(?=\s)")
CSS_BUDGET = 1_000_000
"""Characters of style text read per page."""
_META_IMAGES = frozenset(
    {"og:image", "og:image:url", "og:image:secure_url", "twitter:image", "twitter:image:src"}
)


@dataclass
class Found:
    pages: list[str] = field(default_factory=list)
    media: list[str] = field(default_factory=list)


def is_media_path(url: str) -> bool:
    path = url.split("?", 1)[0].split("#", 1)[0].lower()
    return path.endswith(MEDIA_EXTENSIONS)


class _Parser(HTMLParser):
    def __init__(self, base: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.pages: dict[str, None] = {}
        self.media: dict[str, None] = {}
        self.in_style = False
        self.css_budget = CSS_BUDGET

    def _add(self, raw: str | None, media: bool) -> None:
        if not raw or len(self.pages) + len(self.media) >= MAX_LINKS:
            return
        raw = raw.strip()
        if raw.startswith(("javascript:", "data:", "mailto:", "tel:", "#")):
            return
        try:
            url = normalize(raw, self.base)
        except (BadUrl, ValueError):
            return
        (self.media if media or is_media_path(url) else self.pages)[url] = None

    def _srcset(self, value: str | None) -> None:
        # Candidates are separated by a comma *after whitespace or a descriptor*: URLs may hold commas
        # themselves (image CDNs write w_300,h_200 in the path).
        for candidate in _SRCSET_SPLIT.split((value or "").strip()):
            parts = candidate.strip().rstrip(",").split()
            if parts:
                self._add(parts[0], True)

    def _css(self, text: str | None) -> None:
        if self.css_budget <= 0 or not text:
            return
        text = text[: self.css_budget]  # hostile stylesheets cost bounded time
        self.css_budget -= len(text)
        for match in _CSS_URL.finditer(text):
            self._add(match.group(2), True)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): v for k, v in attrs}
        if tag == "base" and a.get("href"):
            with contextlib.suppress(BadUrl, ValueError):
                self.base = normalize(a["href"] or "", self.base)
        elif tag == "img":
            self._add(a.get("src"), True)
            self._srcset(a.get("srcset"))
            self._srcset(a.get("data-srcset"))
            for name in LAZY_ATTRS:
                self._add(a.get(name), True)
        elif tag in ("source", "video", "audio", "embed", "track"):
            self._add(a.get("src"), tag != "track")
            self._srcset(a.get("srcset"))
            self._add(a.get("poster"), True)
        elif tag in ("a", "area"):
            href = a.get("href")
            gallery = any(k in a for k in ("data-lightbox", "data-fancybox", "data-gallery", "data-pswp-src"))
            self._add(a.get("data-pswp-src"), True)
            self._add(href, gallery and href is not None and not href.startswith("#"))
            for name in GALLERY_ATTRS:
                self._add(a.get(name), True)
        elif tag in ("iframe", "frame"):
            self._add(a.get("src"), False)
        elif tag == "meta":
            key = (a.get("property") or a.get("name") or "").lower()
            if key in _META_IMAGES:
                self._add(a.get("content"), True)
            elif (a.get("http-equiv") or "").lower() == "refresh":  # a page that only redirects
                _, _, target = (a.get("content") or "").partition(";")
                name, _, url = target.strip().partition("=")
                if name.strip().lower() == "url":
                    self._add(url.strip().strip("'\""), False)
        elif tag == "link" and (a.get("rel") or "").lower() == "image_src":
            self._add(a.get("href"), True)
        elif tag == "style":
            self.in_style = True
        if tag != "a":
            for name in GALLERY_ATTRS:
                if name in a:
                    self._add(a.get(name), True)
        if a.get("style"):
            self._css(a.get("style"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self.in_style = False

    def handle_data(self, data: str) -> None:
        if self.in_style:
            self._css(data)


def extract(html: str, base: str) -> Found:
    """Page links and media URLs of an HTML document at ``base`` (normalised, de-duplicated, in order)."""
    parser = _Parser(base)
    try:
        parser.feed(html)
        parser.close()
    except Exception:
        pass
    return Found(list(parser.pages), list(parser.media))
