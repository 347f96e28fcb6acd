"""Usage reports a use case asks for: the demo's closing reports, and the vendor's usage
statement compared with the master's. No printing: callers decide what to show."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from ledger import LedgerApp
from projections import ProjectionRunner, render_status_table, usage_table, write_html_report
from seatledger.config.settings import Config, load_config
from seatledger.config.store import open_ledger


@attrs.frozen
class ClosingReports:
    """The status table, usage tables by pool and by site, and the HTML report's path."""

    status_text: str
    by_pool_text: str
    by_site_text: str
    html: Path
    has_usage: bool


def closing_reports(app: LedgerApp, root: Path, start: datetime, end: datetime) -> ClosingReports:
    """Bring the read models up to date and report on [start, end); the HTML report is
    written to ``root/usage-report.html``."""
    with ProjectionRunner(app) as runner:
        runner.run_once()
        status = runner.status()
        by_pool = runner.usage(start, end, by="class", as_of=end)
        by_site = runner.usage(start, end, by="site", as_of=end)
        path = write_html_report(runner, root / "usage-report.html", start, end, as_of=end)
    return ClosingReports(render_status_table(status, now=end), usage_table(by_pool),
                          usage_table(by_site), path,
                          status is not None and bool(by_pool.rows))


@attrs.frozen
class UsageComparison:
    same: bool
    rows: int
    first_difference: tuple[Any, Any] | None


def compare_usage(config: Config, vendor_dir: Path, start: datetime,
                  end: datetime) -> UsageComparison:
    """Compare the vendor's usage statement for [start, end), from its imported history,
    with the master's, by site and by pool."""
    reports = []
    for cfg in (config, load_config(vendor_dir)):
        with open_ledger(cfg, read_only=True) as app, ProjectionRunner(app) as runner:
            runner.run_once()
            reports.append(runner.usage(start, end, by="site", as_of=end).rows
                           + runner.usage(start, end, by="class", as_of=end).rows)
    mine, theirs = reports
    difference: tuple[Any, Any] | None = next(
        ((a, b) for a, b in zip(mine, theirs, strict=False) if a != b), None)
    if difference is None and len(mine) != len(theirs):
        difference = (mine[len(theirs):][:1] or None, theirs[len(mine):][:1] or None)
    return UsageComparison(mine == theirs, len(mine), difference)


__all__ = ["ClosingReports", "UsageComparison", "closing_reports", "compare_usage"]
