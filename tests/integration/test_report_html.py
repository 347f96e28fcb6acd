"""The HTML usage report, opened in a real browser (headless Chromium) and looked at.

The screenshot is decoded here (PNG is zlib plus a per-row filter) and must show the chart:
the peak line, the dashed limit, the grace band and the over-use strip in their colours,
on a page that is far from blank. Chromium missing is a failure, never a skip.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from ledger import ManualClock
from projections import ProjectionRunner, write_html_report
from projections.html_report import LIMIT_COLOUR, PEAK_COLOUR, WINDOW_COLOURS
from tests.integration.test_projections_contract import DAY, at, make_app, scripted_day

WIDTH, HEIGHT = 1200, 800


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB bytes) of an 8-bit RGB or RGBA, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 4 if colour == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = previous[i]
                c = previous[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        previous = line
        rows.append(bytes(line) if bpp == 3 else bytes(
            v for i in range(0, stride, 4) for v in line[i:i + 3]))
    return width, height, rows


def rgb(hex_colour: str) -> tuple[int, int, int]:
    value = int(hex_colour.lstrip("#"), 16)
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF


def near(counts: Counter[tuple[int, int, int]], colour: str, tolerance: int = 6) -> int:
    want = rgb(colour)
    return sum(n for c, n in counts.items()
               if all(abs(x - y) <= tolerance for x, y in zip(c, want, strict=True)))


def screenshot_colours(page: Path, tmp_path: Path, width: int, height: int,
                       what: str) -> Counter[tuple[int, int, int]]:
    """Open ``page`` in headless Debian chromium; the screenshot's pixels counted by colour."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail(f"chromium is not installed (Debian package 'chromium'): {what} must be "
                    "checked in a real browser", pytrace=False)
    shot = tmp_path / "screenshot.png"
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", f"--window-size={width},{height}", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    shot_width, shot_height, rows = decode_png(shot.read_bytes())
    assert (shot_width, shot_height) == (width, height)
    counts: Counter[tuple[int, int, int]] = Counter()
    for row in rows:
        counts.update(zip(row[0::3], row[1::3], row[2::3], strict=True))
    return counts


@pytest.fixture
def report(tmp_path: Path) -> Path:
    clock = ManualClock(at("06:00"))
    with make_app(f"sqlite:///{tmp_path}/ledger.db", clock) as app:
        scripted_day(app, clock)
        with ProjectionRunner(app) as runner:
            runner.run_once()
            return write_html_report(runner, tmp_path / "usage.html", DAY,
                                     DAY + timedelta(days=1), as_of=at("18:00"))


def test_the_report_is_one_self_contained_file(report: Path) -> None:
    html = report.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "<svg" in html and "<script" not in html and "<link" not in html
    urls = set(re.findall(r"(?:https?|ftp)://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}  # the SVG namespace only: no fetches
    assert "PRED" in html and "Daily statement by pool" in html
    assert "over the limit: 2026-03-02 09:15 to 2026-03-02 10:00" in html


def test_the_report_renders_its_chart_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    counts = screenshot_colours(report, tmp_path, WIDTH, HEIGHT, "the HTML report")
    total = WIDTH * HEIGHT
    white = near(counts, "#ffffff", 3)
    assert total - white > total // 10, "the page is (nearly) blank"
    assert len(counts) > 50, "the page is (nearly) one colour"
    # The PRED chart sits right under the header: its lines and bands must be on screen.
    assert near(counts, PEAK_COLOUR) > 400, "no peak line"
    assert near(counts, LIMIT_COLOUR, 12) > 100, "no limit line"
    assert near(counts, WINDOW_COLOURS["grace"], 4) > 20_000, "no grace band"
    assert near(counts, WINDOW_COLOURS["overuse"], 8) > 150, "no over-use strip"
