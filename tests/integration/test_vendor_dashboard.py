"""The reseller's dashboard: one self-contained file, opened in headless Chromium and looked at.

Over the hand-computed month of :mod:`test_vendor_analytics` (Acme's ACD 2 seats on a limit
of 1 for 3 hours, PBX the same for 2 hours before the month ends). The screenshot is decoded
and must show the concurrency charts (peak line, dashed limit, over-the-limit strip) and the
over-use bars in their colours. Chromium missing is a failure, never a skip.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from ledger import LedgerApp, ManualClock
from seatledger.cli.main import main
from seatledger.vendor.analytics import AnalyticsRunner
from seatledger.vendor.dashboard import (
    LIMIT_COLOUR,
    OVER_COLOUR,
    OVERUSE_COLOURS,
    PEAK_COLOUR,
    month_series,
    write_dashboard,
)
from seatledger.vendor.findings import Findings, Kind, NewFinding
from seatledger.vendor.home import init_vendor_home
from seatledger.vendor.registry import VendorStore
from tests.integration.test_report_html import near, screenshot_colours
from tests.integration.test_vendor_analytics import Shipper, small_month, vendor_records

NOW = datetime(2026, 4, 2, 9, tzinfo=UTC)
WIDTH, HEIGHT = 1200, 1800


@pytest.fixture
def store(tmp_path: Path, open_ledger: Callable[..., LedgerApp],
          clock: ManualClock) -> VendorStore:
    config = init_vendor_home(tmp_path / "vendor", name="Reseller")
    store = VendorStore.open(config)
    shipper = Shipper(open_ledger(), vendor_records(store), "Acme")
    small_month(shipper.app, clock, shipper.ship)
    AnalyticsRunner(vendor_records(store)).run_once()
    with store.transaction() as conn:
        Findings(store.engine).open(conn, [NewFinding.of(
            "Acme", Kind.GRACE_OPENED, "2026-03-02", "ACD over its limit of 1")], NOW)
    return store


@pytest.fixture
def dashboard(store: VendorStore, tmp_path: Path) -> Path:
    return write_dashboard(store.engine, tmp_path / "dashboard.html", "2026-03", now=NOW,
                           as_of=date(2026, 4, 2))


def test_the_hourly_series_fill_the_hours_between_records(store: VendorStore) -> None:
    with store.engine.connect() as conn:
        series = month_series(conn, "2026-03", "Acme")
    acd = series["ACD"]
    assert len(acd.peaks) == 31 * 24  # the customer's records reach into April
    day2 = 24  # 2026-03-02 00:00 is hour 24 of the month
    assert acd.peaks[day2 + 7:day2 + 12] == (0, 2, 2, 2, 0)  # 08:00-11:00
    assert acd.limits[day2 + 6:day2 + 8] == (1, 1) and acd.limits[0] is None
    assert sum(acd.excess_us) == 3 * 3600 * 10**6
    pbx = series["PBX"]
    assert pbx.peaks[-3:] == (0, 2, 2)  # 22:00 to midnight on the 31st, no record in them
    assert sum(pbx.excess_us) == 2 * 3600 * 10**6


def test_the_dashboard_is_one_self_contained_file(dashboard: Path) -> None:
    text = dashboard.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "<svg" in text and "<script" not in text and "<link" not in text
    urls = set(re.findall(r"(?:https?|ftp)://[^\s\"'<>)]+", text))
    assert urls <= {"http://www.w3.org/2000/svg"}
    assert 'id="c-Acme"' in text and "ACD over its limit of 1" in text
    assert "over the limit: 02 08:00 to 02 11:00" in text
    assert "ACD 2026-03-02: 3.00 over-use agent-hours" in text


def test_the_dashboard_command_writes_the_file(
        store: VendorStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.html"
    code = main(["vendor", "report", "dashboard", "--vendor-dir", str(store.config.root),
                 "--month", "2026-03", "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    assert 'id="c-Acme"' in out.read_text()


def test_the_dashboard_renders_its_charts_in_headless_chromium(
        dashboard: Path, tmp_path: Path) -> None:
    counts = screenshot_colours(dashboard, tmp_path, WIDTH, HEIGHT, "the dashboard")
    total = WIDTH * HEIGHT
    assert total - near(counts, "#ffffff", 3) > total // 10, "the page is (nearly) blank"
    assert len(counts) > 50, "the page is (nearly) one colour"
    assert near(counts, PEAK_COLOUR) > 1000, "no peak lines"
    assert near(counts, LIMIT_COLOUR, 12) > 300, "no limit lines"
    assert near(counts, OVER_COLOUR, 8) > 40, "no over-the-limit strip"
    assert near(counts, OVERUSE_COLOURS["ACD"], 8) > 1000, "no ACD over-use bar"
    assert near(counts, OVERUSE_COLOURS["PBX"], 8) > 500, "no PBX over-use bar"
