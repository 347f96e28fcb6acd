"""``seatledger vendor``: the vendor's workstation (its home, customers, licences), plus the
import and report commands registered from :mod:`seatledger.cli.vendor_import` and
:mod:`seatledger.cli.vendor_reports`."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seatledger.cli import output, vendor_import, vendor_reports
from seatledger.cli._names import DEFAULT_GRACE_SECONDS, DEFAULT_REARM_SECONDS
from seatledger.cli.common import Add, date_arg, duration_arg, limits_arg, optional_int_arg
from seatledger.cli.exits import EXIT_OK

if TYPE_CHECKING:
    from seatledger.vendor.home import VendorConfig

# The ledger and the vendor's store are imported by the commands that use them: building
# this module's parser (``seatledger vendor --help``) must not load them.


def _home(args: argparse.Namespace) -> VendorConfig:
    from seatledger.vendor.home import load_vendor_config, vendor_dir_from

    return load_vendor_config(vendor_dir_from(args.vendor_dir))


def cmd_init(args: argparse.Namespace) -> int:
    from seatledger.vendor.home import init_vendor_home, vendor_dir_from

    root = vendor_dir_from(args.vendor_dir)
    config = init_vendor_home(root, name=args.name, store_url=args.store_url,
                              destination=args.export_to, host_key=args.host_key or "")
    layout = config.layout
    output.say(args, {"vendor_dir": str(root), "store": config.store_url,
                      "licence_key": str(layout.licence_pub), "recipient": config.recipient(),
                      "export_destination": config.export_destination},
               f"vendor home {root}\n"
               f"  licence key   {layout.licence_pub}  (customers pin it: "
               f"seatledger init --vendor-key FILE)\n"
               f"  age identity  {layout.age_identity} (0600); recipient {config.recipient()}\n"
               f"  exports to    {config.export_destination}\n"
               f"  store         {config.store_url}")
    return EXIT_OK


def cmd_key(args: argparse.Namespace) -> int:
    config = _home(args)
    if args.output:
        shutil.copyfile(config.layout.licence_pub, args.output)
        Path(args.output).chmod(0o644)
        print(f"wrote the vendor's licence key to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(config.layout.licence_pub.read_text())
    return EXIT_OK


def cmd_customer_add(args: argparse.Namespace) -> int:
    from seatledger.vendor.registry import VendorStore

    with VendorStore.open(_home(args)) as store:
        store.add_customer(args.name)
    output.say(args, {"customer": args.name.strip()}, f"customer {args.name.strip()!r} added")
    return EXIT_OK


def cmd_customer_list(args: argparse.Namespace) -> int:
    from seatledger.vendor.registry import VendorStore

    with VendorStore.open(_home(args)) as store:
        names = store.customer_names()
        issued = store.issued()
    latest = {lic.customer: lic for lic in issued}
    rows = [{"customer": n, "serial": latest[n].serial if n in latest else None,
             "expires_at": latest[n].expires_at if n in latest else None,
             "master_origin": latest[n].master_origin if n in latest else None}
            for n in names]
    output.say(args, {"customers": rows}, output.table(
        ["customer", "serial", "expires", "master"],
        [[r["customer"], r["serial"] or "-", r["expires_at"] or "-", r["master_origin"] or "-"]
         for r in rows]) if rows else "no customers yet")
    return EXIT_OK


def cmd_licence_issue(args: argparse.Namespace) -> int:
    from ledger import GracePolicy
    from seatledger.config.licence_file import read_request
    from seatledger.vendor.licensing import issue_licence
    from seatledger.vendor.registry import VendorStore

    config = _home(args)
    request = read_request(Path(args.request))
    with VendorStore.open(config) as store:
        signed = issue_licence(
            config, store, customer=args.customer, request=request, limits=args.seats,
            total_pred_acd=args.total_pred_acd,
            policy=GracePolicy(args.grace, args.rearm, args.ceiling),
            campaigns=args.campaigns, expires_at=args.expires,
            tolerated_days=args.tolerated_days, hours=args.hours)
    t = signed.terms
    if args.output:
        Path(args.output).write_text(signed.text, encoding="utf-8")
        where = args.output
    else:
        sys.stdout.write(signed.text)
        where = "standard output"
    summary = {"customer": t.customer, "licence_id": t.licence_id, "serial": t.serial,
               "expires_at": t.expires_at.isoformat(), "sha256": signed.sha256,
               "file": args.output}
    message = (f"issued {t.licence_id} (serial {t.serial}) for {t.customer}, bound to "
               f"{t.master_origin}, expires {t.expires_at:%Y-%m-%d}; written to {where}")
    if args.json:
        output.say(args, summary, "")
    else:
        print(message, file=sys.stderr)
    return EXIT_OK


def cmd_licence_list(args: argparse.Namespace) -> int:
    from seatledger.vendor.registry import VendorStore

    with VendorStore.open(_home(args)) as store:
        issued = store.issued(args.customer)
    output.say(args, {"licences": [lic.as_dict() for lic in issued]}, output.table(
        ["customer", "serial", "licence", "seats", "issued", "expires", "master"],
        [[lic.customer, lic.serial, lic.licence_id, lic.limits, lic.issued_at, lic.expires_at,
          lic.master_origin] for lic in issued]) if issued else "no licences issued yet")
    return EXIT_OK


def register(sub: Any, add: Add, common: argparse.ArgumentParser) -> None:
    """Add the vendor's commands to the parser."""
    vendor_common = argparse.ArgumentParser(add_help=False, parents=[common])
    vendor_common.add_argument(
        "--vendor-dir", metavar="DIR", default=argparse.SUPPRESS,
        help="the vendor's home (default: $SEATLEDGER_VENDOR_DIR or ./seatledger-vendor)")

    def vadd(parent: Any, name: str, fn: Any, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(
            name, parents=[vendor_common], help=help_text, description=help_text)
        p.set_defaults(fn=fn)
        return p

    v = sub.add_parser("vendor", help="the vendor's workstation: licences, customers' exports, "
                       "billing and abuse analytics", parents=[vendor_common])
    vsub = v.add_subparsers(dest="vendor_command", metavar="ACTION")
    vsub.required = True
    p = vadd(vsub, "init", cmd_init, "create the vendor's home: keys, config, store")
    p.add_argument("--name", default="vendor", help="the vendor's (or reseller's) name")
    p.add_argument("--store-url", help="PostgreSQL URL for the store (default: vendor.db)")
    p.add_argument("--export-to", metavar="URL",
                   help="where licences direct customers' exports: sftp://host:port/dir, "
                        "ftps://, ftp:// or file:///dir (default: this home's inbox/)")
    p.add_argument("--host-key", metavar="SHA256:...",
                   help="the SFTP server's host-key fingerprint (ssh-keygen -lf)")
    p = vadd(vsub, "key", cmd_key, "print (or write) the public key customers' masters pin")
    p.add_argument("--output", metavar="FILE")

    c = vsub.add_parser("customer", help="add or list customers", parents=[vendor_common])
    csub = c.add_subparsers(dest="customer_command", metavar="ACTION")
    csub.required = True
    p = vadd(csub, "add", cmd_customer_add, "add a customer")
    p.add_argument("name")
    vadd(csub, "list", cmd_customer_list, "list customers with their latest licence")

    lic = vsub.add_parser("licence", help="issue or list licences", parents=[vendor_common])
    lsub = lic.add_subparsers(dest="licence_command", metavar="ACTION")
    lsub.required = True
    p = vadd(lsub, "issue", cmd_licence_issue,
             "sign a licence for a customer's master (from its 'licence request')")
    p.add_argument("--customer", required=True)
    p.add_argument("--request", required=True, metavar="FILE",
                   help="the master's request file (seatledger licence request)")
    p.add_argument("--seats", type=limits_arg, required=True, metavar="PRED=150,ACD=50")
    p.add_argument("--total-pred-acd", type=optional_int_arg, default=None, metavar="N")
    p.add_argument("--hours", type=limits_arg, default=None, metavar="PRED=5000",
                   help="agent-hours per class, counted down while its seats are held "
                        "(a class may have hours and no --seats limit)")
    p.add_argument("--grace", type=duration_arg, default=DEFAULT_GRACE_SECONDS, metavar="48h")
    p.add_argument("--rearm", type=duration_arg, default=DEFAULT_REARM_SECONDS, metavar="30d")
    p.add_argument("--ceiling", type=optional_int_arg, default=None, metavar="PERCENT",
                   help="cap over-use during grace at this percentage of the limit (e.g. 125)")
    p.add_argument("--campaigns", type=optional_int_arg, default=None, metavar="N",
                   help="at most N distinct campaigns among the seats held")
    p.add_argument("--expires", type=date_arg, default=None, metavar="DATE",
                   help="expiry (default: one year after issue; at most one year)")
    p.add_argument("--tolerated-days", type=optional_int_arg, default=None, metavar="N",
                   help="days without a delivered export before grace is withdrawn "
                        "(default: vendor.toml's, 30)")
    p.add_argument("--output", metavar="FILE", help="write the licence here (default: stdout)")
    p = vadd(lsub, "list", cmd_licence_list, "the licences issued, by customer and serial")
    p.add_argument("--customer")

    vendor_import.register(vsub, vadd)
    vendor_reports.register(vsub, vadd)
