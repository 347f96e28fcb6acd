"""``seatledger licence``: the master's side of the vendor's signed licence (request,
install, show). Terms are the vendor's: the operator cannot issue or amend them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from seatledger.cli import output
from seatledger.cli.common import Add, config_for
from seatledger.cli.exits import EXIT_OK


def cmd_licence_request(args: argparse.Namespace) -> int:
    from seatledger.services import operator as licences

    request = licences.licence_request(config_for(args))
    if args.output:
        Path(args.output).write_text(request.to_json(), encoding="utf-8")
        print(f"wrote the licence request for {request.origin} ({request.fingerprint}) to "
              f"{args.output}: send it to the vendor", file=sys.stderr)
    else:
        sys.stdout.write(request.to_json())
    return EXIT_OK


def cmd_licence_install(args: argparse.Namespace) -> int:
    from seatledger.services import operator as licences
    from seatledger.services.operator import operator_port

    config = config_for(args)
    with operator_port(config) as port:
        answer = licences.install_licence(port, config, Path(args.file))
    summary = answer["licence"]
    if args.json:
        output.say(args, answer, "")
        return EXIT_OK
    if answer["installed"]:
        print(f"installed licence {summary['licence_id']} (serial {summary['serial']}) for "
              f"{summary['customer']}")
    else:
        print(f"licence {summary['licence_id']} (serial {summary['serial']}) is installed "
              "already: nothing recorded")
    output.licence(args, summary)
    return EXIT_OK


def cmd_licence_show(args: argparse.Namespace) -> int:
    from seatledger.services import operator as licences
    from seatledger.services.operator import operator_port

    with operator_port(config_for(args)) as port:
        summary = licences.show_licence(port)
    output.licence(args, summary)
    return EXIT_OK


def register(sub: Any, add: Add, common: argparse.ArgumentParser) -> None:
    """Add this group's commands to the parser."""
    lic = sub.add_parser("licence", help="request, install or show the vendor-signed licence",
                         parents=[common])
    lsub = lic.add_subparsers(dest="action", metavar="ACTION")
    lsub.required = True
    p = add(lsub, "request", cmd_licence_request,
            "what the vendor needs to bind a licence to this master (send it to the vendor)")
    p.add_argument("--output", metavar="FILE", help="write it here (default: stdout)")
    p = add(lsub, "install", cmd_licence_install,
            "install a licence file the vendor signed (the running master picks it up)")
    p.add_argument("file", metavar="FILE")
    add(lsub, "show", cmd_licence_show,
        "the licence: serial, issuer, expiry and days left, limits, grace state, trial mode")
