"""``seatledger doctor``: check a data directory is fit to run; one line per problem."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from seatledger.cli.common import Add
from seatledger.cli.exits import EXIT_FAILED, EXIT_OK

HELP = ("check a data directory: config, key and file modes, disk, seal, export, licence, "
        "clock")


def cmd_doctor(args: argparse.Namespace) -> int:
    from seatledger.config.settings import data_dir_from
    from seatledger.services.doctor import run_checks

    checks = run_checks(data_dir_from(args.data_dir))
    problems = [c for c in checks if not c.ok]
    if args.json:
        print(json.dumps({"ok": not problems, "checks": [c.as_dict() for c in checks]}))
    else:
        for check in checks:
            if check.ok:
                print(f"ok       {check.name}: {check.detail}")
    for check in problems:
        print(f"seatledger: doctor: {check.name}: {check.detail}", file=sys.stderr)
    return EXIT_FAILED if problems else EXIT_OK


def register(sub: Any, add: Add, common: argparse.ArgumentParser) -> None:
    """Add this group's commands to the parser."""
    add(sub, "doctor", cmd_doctor, HELP)
