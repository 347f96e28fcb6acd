"""``seatledger licence``: issue, amend or show the licence."""

from __future__ import annotations

import argparse
from typing import Any

from ledger import GracePolicy
from seatledger.cli import output
from seatledger.cli.common import (
    Add,
    config_for,
    date_arg,
    duration_arg,
    limits_arg,
    optional_int_arg,
)
from seatledger.cli.exits import EXIT_OK
from seatledger.services import operator as licences
from seatledger.services.errors import UsageError
from seatledger.services.operator import operator_port


def cmd_licence_issue(args: argparse.Namespace) -> int:
    with operator_port(config_for(args)) as port:
        summary = licences.issue_licence(
            port,
            customer=args.customer,
            limits=args.seats,
            total_pred_acd=args.total_pred_acd,
            expires_at=args.expires,
            policy=GracePolicy(args.grace, args.rearm, args.ceiling),
            cutoff_seconds=args.cutoff,
        )
    output.licence(args, summary)
    return EXIT_OK


def cmd_licence_amend(args: argparse.Namespace) -> int:
    with operator_port(config_for(args)) as port:
        current = licences.show_licence(port)
        terms: dict[str, Any] = {}
        if args.seats is not None:
            # Classes not named keep their limit; give CLASS=0 to drop one.
            limits = {**current["limits"], **args.seats}
            terms["limits"] = {c: n for c, n in limits.items() if n > 0}
        if args.total_pred_acd is not False:
            terms["total_pred_acd"] = args.total_pred_acd
        if args.expires is not None:
            terms["expires_at"] = args.expires
        if args.grace is not None or args.rearm is not None or args.ceiling is not False:
            terms["policy"] = GracePolicy(
                args.grace if args.grace is not None else current["grace_seconds"],
                args.rearm if args.rearm is not None else current["rearm_seconds"],
                current["ceiling_percent"] if args.ceiling is False else args.ceiling,
            )
        if not terms:
            raise UsageError("nothing to amend: give --seats, --total-pred-acd, --expires, "
                             "--grace, --rearm or --ceiling")
        summary = licences.amend_licence(port, **terms)
    output.licence(args, summary)
    return EXIT_OK


def cmd_licence_show(args: argparse.Namespace) -> int:
    with operator_port(config_for(args)) as port:
        summary = licences.show_licence(port)
    output.licence(args, summary)
    return EXIT_OK


def register(sub: Any, add: Add, common: argparse.ArgumentParser) -> None:
    """Add this group's commands to the parser."""
    lic = sub.add_parser("licence", help="issue, amend or show the licence", parents=[common])
    lsub = lic.add_subparsers(dest="action", metavar="ACTION")
    lsub.required = True
    p = add(lsub, "issue", cmd_licence_issue, "issue the licence")
    p.add_argument("--customer", required=True)
    p.add_argument("--seats", type=limits_arg, required=True, metavar="PRED=150,ACD=50")
    p.add_argument("--total-pred-acd", type=optional_int_arg, default=None, metavar="N")
    p.add_argument("--grace", type=duration_arg, default=48 * 3600, metavar="48h")
    p.add_argument("--rearm", type=duration_arg, default=30 * 86400, metavar="30d")
    p.add_argument("--ceiling", type=optional_int_arg, default=None, metavar="PERCENT",
                   help="cap over-use during grace at this percentage of the limit (e.g. 125)")
    p.add_argument("--expires", type=date_arg, default=None, metavar="DATE",
                   help="expiry (default: one year from now; at most one year)")
    p.add_argument("--cutoff", type=duration_arg, default=15 * 60, metavar="15m",
                   help="how long a disconnected site keeps its seats before it is cut off")
    p = add(lsub, "amend", cmd_licence_amend, "change the licence terms (re-arms grace)")
    p.add_argument("--seats", type=limits_arg, default=None, metavar="PRED=150,ACD=50")
    p.add_argument("--total-pred-acd", type=optional_int_arg, default=False, metavar="N|none")
    p.add_argument("--grace", type=duration_arg, default=None, metavar="48h")
    p.add_argument("--rearm", type=duration_arg, default=None, metavar="30d")
    p.add_argument("--ceiling", type=optional_int_arg, default=False, metavar="PERCENT|none")
    p.add_argument("--expires", type=date_arg, default=None, metavar="DATE")
    add(lsub, "show", cmd_licence_show, "show the licence, its limits and grace state")
