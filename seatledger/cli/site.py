"""``seatledger site``: enrol, revoke or list sites; show or release their seats."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from seatledger.cli import output
from seatledger.cli.common import (
    Add,
    config_for,
    fmt_limits,
    limits_arg,
)
from seatledger.cli.exits import EXIT_OK


def cmd_site_enrol(args: argparse.Namespace) -> int:
    from seatledger.services import operator
    from seatledger.services.operator import operator_port
    from seatledger.services.sites import enrol_site

    config = config_for(args)
    with operator_port(config) as port:
        operator.show_licence(port)  # a clear error when no licence is issued yet
        bundle = enrol_site(config, port, args.name,
                            local_limits=args.local_limit or {}, master=args.master,
                            secondary=args.secondary,
                            output=Path(args.output) if args.output else None)
        site = next(s for s in operator.list_sites(port) if s["site"] == args.name)
    limits = site["local_limits"]
    output.say(args, {"site": site["site"], "local_limits": limits,
                      "bundle": str(bundle), "fingerprint": site["fingerprint"]},
               f"enrolled site {site['site']}"
               + (f" (local limits {fmt_limits(limits)})" if limits else "")
               + f"\n  bundle {bundle} (0600): give it to the site's slave connector")
    return EXIT_OK


def cmd_site_revoke(args: argparse.Namespace) -> int:
    from seatledger.services.operator import operator_port
    from seatledger.services.sites import revoke_site

    config = config_for(args)
    with operator_port(config) as port:
        released = revoke_site(config, port, args.name)
    output.say(args, {"site": args.name, "released": released},
               f"revoked site {args.name}; released {released} seat(s)")
    return EXIT_OK


def cmd_site_list(args: argparse.Namespace) -> int:
    from seatledger.services import operator
    from seatledger.services.operator import operator_port

    with operator_port(config_for(args)) as port:
        output.sites(args, operator.list_sites(port))
    return EXIT_OK


def cmd_site_seats(args: argparse.Namespace) -> int:
    from seatledger.services import operator
    from seatledger.services.operator import operator_port

    with operator_port(config_for(args)) as port:
        output.seats(args, operator.site_seats(port, args.name))
    return EXIT_OK


def cmd_site_release(args: argparse.Namespace) -> int:
    from seatledger.services import operator
    from seatledger.services.operator import operator_port

    with operator_port(config_for(args)) as port:
        released = operator.release_seats(port, args.name, None if args.all else args.user)
    seats = ", ".join(f"{s['user']} (seat {s['seat']}, {s['agent_class']})" for s in released)
    output.say(args, {"site": args.name, "reason": "operator", "released": released},
               f"released {len(released)} seat(s) at site {args.name}"
               + (f": {seats}" if seats else ""))
    return EXIT_OK


def register(sub: Any, add: Add, common: argparse.ArgumentParser) -> None:
    """Add this group's commands to the parser."""
    site = sub.add_parser("site", help="enrol, revoke or list sites; show or release seats",
                         parents=[common])
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
    p = add(ssub, "seats", cmd_site_seats, "who holds which seat at a site, since when")
    p.add_argument("name")
    p = add(ssub, "release", cmd_site_release,
            "release seats at a site (recorded, reason operator; a connected site is told)")
    p.add_argument("name")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--user", metavar="USER", help="the user whose seat to release")
    which.add_argument("--all", action="store_true",
                       help="every seat held at the site (a dead site's)")
