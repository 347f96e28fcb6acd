"""The dashboard of a real master in a real browser (the system chromium, driven by
Playwright): seats acquired through a real slave show up on the open page without a reload,
a grace window's countdown ticks, and the screenshot (decoded here) shows the pools' bars."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
import trio
from playwright.sync_api import Page, expect, sync_playwright

from seatledger.web.page import GRACE_COLOUR, IN_USE_COLOUR
from tests.integration.test_report_html import decode_png, near
from tests.integration.web_world import (
    Deployment,
    deploy,
    free_port,
    master,
    seat,
    slave,
    wait_for_line,
)

WIDTH, HEIGHT = 1200, 900


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed (Debian package 'chromium'): the dashboard "
                    "must be checked in a real browser", pytrace=False)
    return path


def colours(png: bytes) -> Counter[tuple[int, int, int]]:
    width, height, rows = decode_png(png)
    assert (width, height) == (WIDTH, HEIGHT)
    counts: Counter[tuple[int, int, int]] = Counter()
    for row in rows:
        counts.update(zip(row[0::3], row[1::3], row[2::3], strict=True))
    return counts


def watch_the_page(url: str, state: Path, shots: Path) -> None:
    """In the browser: the page as it loads, then while seats are acquired."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            page.goto(url)
            in_use = page.locator("#in-use-PRED")
            expect(in_use).to_have_text("0", timeout=30_000)
            expect(page.locator("#licence")).to_contain_text("Acme")
            expect(page.locator("#hours rect")).to_have_count(24)
            expect(page.locator("#days rect")).to_have_count(30)
            (shots / "before.png").write_bytes(page.screenshot())
            loads = page.evaluate("performance.getEntriesByType('navigation').length")

            # The site's session is up (so the seats are the master's, not offline ones).
            expect(page.locator("#sites tbody")).to_contain_text("connected", timeout=30_000)
            for user in ("p1", "p2", "p3"):  # the licence has 3 PRED seats
                assert "normal" in seat(state, "acquire", "--user", user, "--class", "PRED")
            expect(in_use).to_have_text("3", timeout=30_000)
            expect(page.locator("#site-seats-north")).to_have_text("3")
            assert "overuse" in seat(state, "acquire", "--user", "p4", "--class", "PRED")
            expect(in_use).to_have_text("4", timeout=30_000)
            countdown = page.locator("#countdown-PRED")
            expect(countdown).to_have_text(re.compile(r"^47h 59m \d\ds left$"), timeout=30_000)
            first = countdown.inner_text()
            expect(countdown).not_to_have_text(first, timeout=5_000)  # it ticks
            expect(page.locator("#recent tbody")).to_contain_text("notice", timeout=30_000)
            _no_reload(page, loads)
            (shots / "after.png").write_bytes(page.screenshot())
        finally:
            browser.close()


def _no_reload(page: Page, loads: int) -> None:
    assert page.evaluate("performance.getEntriesByType('navigation').length") == loads
    assert page.evaluate("performance.navigation.type") == 0  # navigated, never reloaded


async def test_the_dashboard_follows_seats_live_in_chromium(tmp_path: Path) -> None:
    chromium()
    port = free_port()
    world: Deployment = deploy(tmp_path, f'[web]\nlisten = "127.0.0.1:{port}"\n',
                               pred=3, acd=97)
    state = tmp_path / "north"
    with master(world) as m:
        await wait_for_line(m, b"serving")
        with slave(world, state) as s:
            await wait_for_line(s, b"socket")
            await trio.to_thread.run_sync(watch_the_page, f"http://127.0.0.1:{port}/", state,
                                          tmp_path)

    before, after = (colours((tmp_path / f"{n}.png").read_bytes()) for n in ("before", "after"))
    total = WIDTH * HEIGHT
    assert total - near(before, "#ffffff", 3) > total // 50, "the page is (nearly) blank"
    assert len(after) > 50, "the page is (nearly) one colour"
    # PRED's bar is full (4 of 3 seats, drawn at most full: 220 x 14 px); ACD's is empty.
    assert near(before, IN_USE_COLOUR, 8) < 200, "a bar before any seat was taken"
    assert near(after, IN_USE_COLOUR, 8) > 2500, "no full in-use bar"
    assert near(after, GRACE_COLOUR, 40) > near(before, GRACE_COLOUR, 40) + 30, \
        "the open grace window is not shown in its colour"
