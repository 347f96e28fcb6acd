"""``seatledger vendor customers`` and ``seatledger vendor report billing|dashboard|expiring``
(plus ``watchlist``, registered from :mod:`seatledger.cli.vendor_import`).

Every command first brings the analytics up to date with the vendor's store, then answers
from them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seatledger.cli import output, vendor_import
from seatledger.cli._names import BILLING_FORMATS, EXPIRY_WINDOW_DAYS
from seatledger.cli.exits import EXIT_OK

if TYPE_CHECKING:
    from seatledger.vendor.registry import VendorStore

# The analytics, the reports and the vendor's store are imported by the commands that use
# them: building this module's parser (``seatledger vendor --help``) must not load them.


def month_arg(text: str) -> str:
    from seatledger.vendor.analytics import parse_month

    try:
        parse_month(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _days_arg(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {text!r}")
    return int(text)


def _store(args: argparse.Namespace) -> VendorStore:
    """The vendor's store, its analytics brought up to date."""
    from seatledger.vendor.analytics import AnalyticsRunner, ConcurrentAnalyticsError
    from seatledger.vendor.home import load_vendor_config, vendor_dir_from
    from seatledger.vendor.records import VendorRecords
    from seatledger.vendor.registry import VendorStore

    config = load_vendor_config(vendor_dir_from(args.vendor_dir))
    store = VendorStore.open(config)
    runner = AnalyticsRunner(VendorRecords(config, store.engine))
    with output.progress(args, runner.pending(), "analysing") as advance:
        try:
            runner.run_once(advance)
        except ConcurrentAnalyticsError:
            runner.run_once()  # another command applied those records: carry on after it
    return store


def _emit(text: str, target: str | None) -> None:
    if target is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    path = Path(target)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    print(f"wrote {path}", file=sys.stderr)


def _now() -> datetime:
    return datetime.now(UTC)


def cmd_customers(args: argparse.Namespace) -> int:
    import attrs

    from seatledger.vendor.reports import customers_overview, customers_table

    with _store(args) as store:
        rows = customers_overview(store.engine)
    output.say(args, {"customers": [attrs.asdict(r) for r in rows]}, customers_table(rows))
    return EXIT_OK


def _renderer(fmt: str) -> Callable[[Any], str]:
    from seatledger.vendor.reports import billing_csv, billing_html, billing_json, billing_table

    render: dict[str, Callable[[Any], str]] = {
        "table": billing_table, "csv": billing_csv, "json": billing_json, "html": billing_html}
    return render[fmt]


def cmd_billing(args: argparse.Namespace) -> int:
    from seatledger.vendor.reports import billing_report

    fmt = "json" if args.json and args.format == "table" else args.format
    with _store(args) as store:
        report = billing_report(store.engine, args.month, as_of=_now().date(),
                                customer=args.customer)
    _emit(_renderer(fmt)(report), args.output)
    return EXIT_OK


def cmd_dashboard(args: argparse.Namespace) -> int:
    from seatledger.vendor.dashboard import write_dashboard

    now = _now()
    month = args.month or f"{now:%Y-%m}"
    with _store(args) as store:
        path = write_dashboard(store.engine, Path(args.output), month, now=now,
                               customer=args.customer)
    output.say(args, {"dashboard": str(path), "month": month}, f"wrote {path}")
    return EXIT_OK


def cmd_expiring(args: argparse.Namespace) -> int:
    import attrs

    from projections.render import to_json
    from seatledger.vendor.reports import expiring_licences

    with _store(args) as store:
        found = expiring_licences(store.engine, now=_now(), within_days=args.days)
    if args.json:
        print(to_json({"within_days": args.days, "licences": [attrs.asdict(x) for x in found]}))
    elif not found:
        print(f"no licence expires within {args.days} days")
    else:
        print(output.table(("customer", "licence", "serial", "expires", "days left"),
                           [(x.customer, x.licence_id, x.serial, output.when(x.expires_at),
                             x.days_left) for x in found]))
    return EXIT_OK


def cmd_rebuild(args: argparse.Namespace) -> int:
    from seatledger.vendor.analytics import AnalyticsRunner
    from seatledger.vendor.home import load_vendor_config, vendor_dir_from
    from seatledger.vendor.records import VendorRecords
    from seatledger.vendor.registry import VendorStore

    config = load_vendor_config(vendor_dir_from(args.vendor_dir))
    with VendorStore.open(config) as store:
        runner = AnalyticsRunner(VendorRecords(config, store.engine))
        with output.progress(args, runner.pending(), "rebuilding") as advance:
            applied = runner.rebuild(advance)
    output.say(args, {"records": applied},
               f"rebuilt the reseller analytics from {applied} imported records")
    return EXIT_OK


def register(vsub: Any, vadd: Any) -> None:
    """Add ``customers`` and the ``report`` group (``vadd(vsub, name, fn, help)`` gives a
    parser with --vendor-dir, --data-dir and --json)."""
    vadd(vsub, "customers", cmd_customers,
         "per customer: licence serial and expiry, master key, last export day, open findings")
    r = vsub.add_parser("report", help="billing, the dashboard, the watchlist, expiring "
                        "licences")
    rsub = r.add_subparsers(dest="report_command", metavar="REPORT")
    rsub.required = True
    p = vadd(rsub, "billing", cmd_billing, "billing per customer for one UTC month")
    p.add_argument("--month", type=month_arg, required=True, metavar="YYYY-MM")
    p.add_argument("--customer", help="only this customer")
    p.add_argument("--format", choices=BILLING_FORMATS, default="table")
    p.add_argument("--output", metavar="FILE", help="write here (default: standard output)")
    p = vadd(rsub, "dashboard", cmd_dashboard,
             "an HTML overview across customers, with a section per customer (no script, "
             "no network)")
    p.add_argument("--output", required=True, metavar="FILE.html")
    p.add_argument("--month", type=month_arg, default=None, metavar="YYYY-MM",
                   help="the UTC month (default: this one)")
    p.add_argument("--customer", help="only this customer")
    p = vadd(rsub, "expiring", cmd_expiring, "licences expiring soon")
    p.add_argument("--days", type=_days_arg, default=EXPIRY_WINDOW_DAYS,
                   help=f"within this many days (default {EXPIRY_WINDOW_DAYS})")
    vendor_import.register_watchlist(rsub, vadd)
    vadd(rsub, "rebuild", cmd_rebuild,
         "rebuild the reseller analytics from every imported record (they are disposable)")
