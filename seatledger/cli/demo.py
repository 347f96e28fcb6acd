"""``seatledger demo``: the whole system end to end on a virtual clock."""

from __future__ import annotations

import argparse
from typing import Any

from seatledger.cli.common import (
    Add,
)


def cmd_demo(args: argparse.Namespace) -> int:
    from seatledger.demo.story import run_demo

    return run_demo(args.data_dir, quiet=args.quiet)

def register(sub: Any, add: Add, common: argparse.ArgumentParser) -> None:
    """Add this group's commands to the parser."""
    p = add(sub, "demo", cmd_demo, "run the whole system end to end on a virtual clock")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
