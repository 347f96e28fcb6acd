"""``seatledger site``: enrol, revoke or list sites."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from seatledger.cli import output
from seatledger.cli.common import (
    Add,
    fmt_limits,
    ledger_for,
    limits_arg,
)
from seatledger.cli.exits import EXIT_OK
from seatledger.config.settings import data_dir_from, load_config
from seatledger.services.sites import enrol_site


def cmd_site_enrol(args: argparse.Namespace) -> int:

    with ledger_for(args) as app:
        app.licence  # noqa: B018 - raises a clear error when no licence is issued yet
        bundle = enrol_site(load_config(data_dir_from(args.data_dir)), app, args.name,
                            local_limits=args.local_limit or {}, master=args.master,
                            secondary=args.secondary,
                            output=Path(args.output) if args.output else None)
        site = app.licence.sites[args.name]
        output.say(args, {"site": site.name, "local_limits": site.local_limits,
                          "bundle": str(bundle), "fingerprint": site.fingerprint},
                   f"enrolled site {site.name}"
                   + (f" (local limits {fmt_limits(site.local_limits)})" if site.local_limits else "")
                   + f"\n  bundle {bundle} (0600): give it to the site's slave connector")
    return EXIT_OK


def cmd_site_revoke(args: argparse.Namespace) -> int:
    with ledger_for(args) as app:
        released = app.revoke_site(args.name)
        output.say(args, {"site": args.name, "released": len(released)},
                   f"revoked site {args.name}; released {len(released)} seat(s)")
    return EXIT_OK


def cmd_site_list(args: argparse.Namespace) -> int:
    with ledger_for(args) as app:
        output.sites(args, app.licence)
    return EXIT_OK

def register(sub: Any, add: Add, common: argparse.ArgumentParser) -> None:
    """Add this group's commands to the parser."""
    site = sub.add_parser("site", help="enrol, revoke or list sites", parents=[common])
    ssub = site.add_subparsers(dest="action", metavar="ACTION")
    ssub.required = True
    p = add(ssub, "enrol", cmd_site_enrol, "enrol a site and write its connection bundle")
    p.add_argument("name")
    p.add_argument("--local-limit", type=limits_arg, default=None, metavar="PRED=40,ACD=10")
    p.add_argument("--master", metavar="HOST:PORT", help="primary master (default: [master] listen)")
    p.add_argument("--secondary", metavar="HOST:PORT", help="secondary master")
    p.add_argument("--output", metavar="FILE",
                   help="bundle file (default: <data-dir>/bundles/NAME.bundle)")
    p = add(ssub, "revoke", cmd_site_revoke, "revoke a site (its seats are released)")
    p.add_argument("name")
    add(ssub, "list", cmd_site_list, "list enrolled sites")
