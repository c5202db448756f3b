"""The review UI in a real browser: Debian's Chromium driven by Playwright against the real service
(uvicorn on 127.0.0.1), through sign-in -> queue -> blurred item -> reveal -> verdict -> consensus, with
the screenshots checked for the blur-and-gray default."""

from __future__ import annotations

import io
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from PIL import Image
from sqlalchemy import func, select

from childshield.audit.log import records
from childshield.store.db import Database, open_database
from childshield.store.models import Review
from childshield.testing.corpus import generated_photo
from childshield.web.app import create_app
from childshield.web.settings import ServiceSettings
from review_helpers import PASSWORD, auth, bank_with, browser, people, png
from waiting import wait_until

CHROMIUM = "/usr/bin/chromium"
playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason=f"Debian's Chromium is not at {CHROMIUM} (apt-get install chromium)",
)


class Served:
    def __init__(self, db: Database, base: str, keys: dict[str, str]) -> None:
        self.db, self.base, self.keys = db, base, keys


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    db = open_database(f"sqlite:///{tmp_path / 'ui.db'}")
    keys = people(db)
    app = create_app(
        ServiceSettings(
            database_url=db.url,
            refresh_seconds=0,
            media_key_file=str(tmp_path / "media.keys"),
            cookie_secure=False,  # plain HTTP on loopback in this test; production keeps Secure cookies
        )
    )
    known = generated_photo(811, 640, 480)
    bank_with(browser(app), keys["admin"], known)
    for upload in (png(known), png(np.ascontiguousarray(known[:, ::-1]))):  # the known image, and mirrored
        r = browser(app).post("/v1/scan", content=upload, headers=auth(keys["service"]))
        assert r.json()["decision"] == "review"
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, "uvicorn to start", unless=lambda: not thread.is_alive())
    try:
        yield Served(db, f"http://127.0.0.1:{port}", keys)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        db.close()


def picture_stats(png_bytes: bytes) -> tuple[float, float]:
    """(edge energy: mean absolute Laplacian of luma, colour: largest channel spread) of a screenshot."""
    rgb = np.asarray(Image.open(io.BytesIO(png_bytes)).convert("RGB"), dtype=np.float32)[2:-2, 2:-2]
    gray = rgb.mean(axis=2)
    lap = np.abs(gray[1:-1, 2:] + gray[1:-1, :-2] + gray[2:, 1:-1] + gray[:-2, 1:-1] - 4 * gray[1:-1, 1:-1])
    return float(lap.mean()), float(np.percentile(np.abs(rgb - rgb.mean(axis=2, keepdims=True)), 99))


def test_sign_in_reveal_decide_and_reach_consensus_in_chromium(served: Served, tmp_path: Path) -> None:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
            errors: list[str] = []
            page.on(
                "console", lambda m: errors.append(f"{m.text} at {m.location}") if m.type == "error" else None
            )
            sign_in(page, served.base, "r1")
            assert page.url.endswith("/review")
            assert page.locator("#session-count").inner_text() == "Reviewed this session: 0"
            rows = page.locator("table.queue tbody tr")
            assert rows.count() == 2
            page.locator("table.queue a.button").first.click()
            page.wait_for_url(re.compile(r"/review/items/\d+$"))
            item_url = page.url

            preview = wait_for_picture(page)
            assert "blurred" in (preview.get_attribute("class") or "")
            blurred = preview.screenshot()
            (tmp_path / "blurred.png").write_bytes(blurred)
            edges_blurred, colour_blurred = picture_stats(blurred)
            assert colour_blurred < 4, "the default view must be gray"
            assert not any(r.action == "review.reveal" for r in records(served.db))

            # Lighter blur through the slider (htmx swaps the panel; still gray, a little sharper).
            page.locator("#blur").evaluate(
                "e => { e.value = 6; e.dispatchEvent(new Event('change', {bubbles: true})); }"
            )
            page.wait_for_selector("img#preview[src*='blur=6']")
            lighter = wait_for_picture(page).screenshot()
            edges_lighter, colour_lighter = picture_stats(lighter)
            assert colour_lighter < 4 and edges_lighter > edges_blurred

            page.locator("#reveal").click()
            page.wait_for_selector("img#preview.revealed")
            revealed = wait_for_picture(page).screenshot()
            (tmp_path / "revealed.png").write_bytes(revealed)
            edges_revealed, colour_revealed = picture_stats(revealed)
            assert colour_revealed > 20 and edges_revealed > 3 * edges_blurred
            assert [r.actor for r in records(served.db) if r.action == "review.reveal"] == ["r1"]

            decide(page, "confirm", "A1")
            assert "waits for 1 more independent review" in page.locator("#last-verdict").inner_text()
            assert page.locator("#session-count").inner_text() == "Reviewed this session: 1"
            assert page.locator("table.queue tbody tr").count() == 1  # the other item is still r1's to do
            page.locator("button", has_text="Sign out").click()
            page.wait_for_url(re.compile(r"/login(\?|$)"))

            sign_in(page, served.base, "r2")
            page.goto(item_url)
            assert "blurred" in (wait_for_picture(page).get_attribute("class") or "")  # r2 starts blurred too
            assert "Reviews so far" not in page.content()  # independent: r1's verdict is not shown
            decide(page, "confirm", "A1")
            notice = page.locator("#last-verdict").inner_text()
            assert "settled" in notice and "confirmed" in notice and "A1" in notice

            # The other item: r2 rejects, r1 confirms -> escalated to the senior, who rules.
            page.locator("table.queue a.button").first.click()
            decide(page, "reject")
            page.locator("button", has_text="Sign out").click()
            sign_in(page, served.base, "r1")
            page.locator("table.queue a.button").first.click()
            decide(page, "confirm", "B2")
            assert "senior" in page.locator("#last-verdict").inner_text()
            page.locator("button", has_text="Sign out").click()
            sign_in(page, served.base, "s1")
            assert page.locator("table.queue a.button", has_text="Rule").count() == 1
            page.locator("table.queue a.button").first.click()
            assert page.locator("h2", has_text="Senior ruling").count() == 1
            assert page.locator("table.votes tbody tr").count() == 2
            decide(page, "confirm", "B2")
            assert "confirmed" in page.locator("#last-verdict").inner_text()
            assert not [e for e in errors if "Content Security Policy" in e], errors
        finally:
            chromium.close()


def sign_in(page: playwright_api.Page, base: str, name: str) -> None:
    page.goto(f"{base}/review")
    page.wait_for_url(re.compile(r"/login(\?|$)"))
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    try:
        page.wait_for_url(re.compile(r"/review$"), timeout=5000)
    except Exception:
        print("URL", page.url, page.content()[:3000])
        raise


def wait_for_picture(page: playwright_api.Page) -> playwright_api.Locator:
    page.wait_for_function(
        "() => { const i = document.getElementById('preview');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    return page.locator("#preview")


def decide(page: playwright_api.Page, verdict: str, classification: str = "") -> None:
    page.check(f"input[name=verdict][value={verdict}]")
    if classification:
        page.select_option("#classification", classification)
    page.click("#submit-verdict")
    page.wait_for_url(re.compile(r"/review\?done=\d+$"))


def test_keyboard_shortcuts_next_item_kept_verdict_distinct_reveal_and_a_narrow_screen(
    served: Served,
) -> None:
    """Issue 16.16 in Chromium: the page reflows on a phone-sized screen (no sideways scrolling, one
    column), the mirrored copy's row names its query variant, Reveal looks nothing like Record, keys choose
    the verdict (never while typing), a refused verdict comes back still chosen and a reload sends nothing,
    and `s` records and opens the next item."""
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = chromium.new_context(viewport={"width": 375, "height": 800}).new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            sign_in(page, served.base, "r1")
            assert fits(page)
            page.keyboard.press("n")  # the queue's next item: the first
            page.wait_for_url(re.compile(r"/review/items/\d+$"))
            first = page.url
            wait_for_picture(page)
            assert fits(page)
            media, context = (page.locator(".columns > section").nth(k).bounding_box() for k in (0, 1))
            assert media and context and context["y"] >= media["y"] + media["height"]  # one column
            page.keyboard.press("n")  # this one waits: the next, the mirrored copy
            page.wait_for_url(lambda url: url != first and "/review/items/" in url)
            mirrored = page.url
            assert "query: flipx" in page.locator("table#matches").inner_text()
            wait_for_picture(page)
            assert fits(page)

            reveal = style(page, "#reveal")
            record = style(page, "#submit-verdict")
            assert reveal["background"] != record["background"] and reveal["border"] != record["border"]
            assert "dashed" in reveal["border"]

            page.fill("textarea[name=note]", "cre")  # typing in a field never triggers a key
            assert not page.is_checked("input[value=confirm]") and not page.is_checked("input[value=reject]")
            page.locator("body").click(position={"x": 5, "y": 5})  # away from the field
            page.keyboard.press("c")
            assert page.is_checked("input[value=confirm]")
            page.keyboard.press("s")  # confirm without a classification: refused, the form kept
            page.wait_for_selector("#verdict-error")
            assert page.url == mirrored and page.is_checked("input[value=confirm]")
            assert page.input_value("textarea[name=note]") == "cre"
            page.reload()  # a GET: nothing sent again
            page.wait_for_selector("#verdict-form")
            assert page.locator("#verdict-error").count() == 0 and count_reviews(served.db) == 0
            page.keyboard.press("2")  # confirm, as the second classification
            assert page.is_checked("input[value=confirm]") and page.input_value("#classification") == "A2"
            page.keyboard.press("r")
            assert page.is_checked("input[value=reject]")
            page.keyboard.press("s")
            page.wait_for_url(re.compile(r"/review/items/\d+\?done=\d+$"))
            assert page.url.startswith(first) and "is recorded" in page.locator("#last-verdict").inner_text()
            assert count_reviews(served.db) == 1
            page.keyboard.press("?")
            assert page.locator("#shortcuts").get_attribute("open") is not None
            page.keyboard.press("q")
            page.wait_for_url(re.compile(r"/review$"))
            assert not [e for e in errors if "Content Security Policy" in e], errors
        finally:
            chromium.close()


def fits(page: playwright_api.Page) -> bool:
    """No sideways scrolling: the page is no wider than the screen."""
    return bool(page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"))


def style(page: playwright_api.Page, selector: str) -> dict[str, str]:
    found: dict[str, str] = page.eval_on_selector(
        selector,
        "e => { const s = getComputedStyle(e);"
        " return {background: s.backgroundColor, border: s.borderStyle + ' ' + s.borderColor}; }",
    )
    return found


def count_reviews(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Review)) or 0)
