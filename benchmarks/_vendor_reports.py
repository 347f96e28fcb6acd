"""Benchmark of the reseller reports; ``measure(workdir)`` returns a dict, and run alone this
prints ONE JSON object.

The analytics tables are seeded directly (no import, no replay): 1,000 customers with one
month (2026-03) of figures for three pools each, refusals, 31 export days, and the month
before as well, so that the report has to find its month through the index. Then:
- ``billing_1000_customers_seconds``: the billing report for 2026-03, all customers,
  rendered as CSV (best of 3; the first, cold run too);
- ``watchlist_seconds``: the open findings, ranked, with 5,000 findings of which 4,000 are
  open, seeded through the Findings API (best of 3).

Usage: python benchmarks/_vendor_reports.py [--workdir DIR]
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from projections.engine import write_rows  # noqa: E402
from projections.timestamps import US_PER_HOUR, to_us  # noqa: E402
from seatledger.vendor.analytics import (  # noqa: E402
    customer_months,
    export_days,
    refusals,
    states,
    usage_months,
)
from seatledger.vendor.home import init_vendor_home  # noqa: E402
from seatledger.vendor.registry import VendorStore, customers  # noqa: E402
from seatledger.vendor.reports import billing_csv, billing_report  # noqa: E402

CUSTOMERS = 1000
FINDINGS = 5000
MONTHS = ("2026-02", "2026-03")


def _seed(store: VendorStore) -> None:
    rng = random.Random(11)
    names = [f"Customer {i:04d}" for i in range(CUSTOMERS)]
    month_rows, overall, refused, days, state_rows = [], [], [], [], []
    for name in names:
        for month in MONTHS:
            start = datetime(2026, int(month[5:]), 1, tzinfo=UTC)
            for pool, limit in (("PRED", 150), ("ACD", 50), ("PBX", 10)):
                peak = rng.randint(limit // 2, limit + limit // 5)
                over = max(0, peak - limit) * rng.randint(0, 40) * US_PER_HOUR
                month_rows.append((name, month, pool, peak * 200 * US_PER_HOUR, peak,
                                   to_us(start + timedelta(days=rng.randint(0, 27))), over,
                                   over // (6 * US_PER_HOUR), over // 3, peak * 40, 0, 0,
                                   peak // 2, limit, limit))
                refused.append((name, month, pool, "limit_enforced", rng.randint(0, 30)))
            overall.append((name, month, rng.randint(0, 40) * US_PER_HOUR, rng.randint(0, 6),
                            rng.randint(10_000, 50_000)))
            for d in range(28 if month == "2026-02" else 31):
                if rng.random() > 0.02:
                    days.append((name, (start + timedelta(days=d)).strftime("%Y-%m-%d"),
                                 rng.randint(300, 2000)))
        state_rows.append((name, 100_000, "2026-02-01", "2026-03-31",
                           to_us(datetime(2026, 3, 31, 23, tzinfo=UTC)), "{}"))
    with store.transaction() as conn:
        write_rows(conn, customers, [(n, "2026-01-01T00:00:00Z") for n in names])
        write_rows(conn, usage_months, month_rows)
        write_rows(conn, customer_months, overall)
        write_rows(conn, refusals, refused)
        write_rows(conn, export_days, days)
        write_rows(conn, states, state_rows)


def _findings_module() -> Any | None:
    """:mod:`seatledger.vendor.findings`, if it exists yet (its table joins the store's
    metadata when imported, so import it before opening the store)."""
    try:
        return importlib.import_module("seatledger.vendor.findings")
    except ModuleNotFoundError:
        return None


def _seed_findings(store: VendorStore, module: Any) -> Any:
    kinds = list(module.Kind)
    rng = random.Random(12)
    new = [module.NewFinding.of(f"Customer {rng.randrange(CUSTOMERS):04d}", rng.choice(kinds),
                                f"2026-03-{rng.randint(1, 31):02d}", f"finding {i}", str(i))
           for i in range(FINDINGS)]
    findings = module.Findings(store.engine)
    with store.transaction() as conn:
        opened = findings.open(conn, new, datetime(2026, 4, 1, tzinfo=UTC))
    for f in opened[:FINDINGS // 5]:
        findings.ack(f.id, "seen", now=datetime(2026, 4, 2, tzinfo=UTC))
    return findings


def _best(fn: Any, runs: int = 3) -> tuple[float, float, Any]:
    times, result = [], None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return times[0], min(times), result


def measure(workdir: Path) -> dict[str, Any]:
    """Seed a vendor store under ``workdir`` and time the reports."""
    module = _findings_module()
    config = init_vendor_home(workdir / "vendor-bench", name="Benchmark")
    results: dict[str, Any] = {"customers": CUSTOMERS}
    with VendorStore.open(config) as store:
        t = time.perf_counter()
        _seed(store)
        results["seed_seconds"] = round(time.perf_counter() - t, 3)

        def billing() -> str:
            report = billing_report(store.engine, "2026-03", as_of=date(2026, 4, 1))
            assert len(report.customers) == CUSTOMERS
            return billing_csv(report)

        cold, best, text = _best(billing)
        results["billing_1000_customers_cold_seconds"] = round(cold, 4)
        results["billing_1000_customers_seconds"] = round(best, 4)
        results["billing_csv_lines"] = text.count("\n")
        if module is not None:
            findings = _seed_findings(store, module)
            _, best, listed = _best(findings.watchlist)
            results["watchlist_seconds"] = round(best, 4)
            results["watchlist_open_findings"] = len(listed)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    if args.workdir is not None:
        print(json.dumps(measure(args.workdir)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(Path(tmp))))


if __name__ == "__main__":
    main()
