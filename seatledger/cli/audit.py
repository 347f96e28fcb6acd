"""``seatledger audit verify`` (the read-model audit questions are in reports)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from seatledger.cli import output
from seatledger.cli.common import (
    Add,
    ledger_for,
)
from seatledger.cli.exits import EXIT_OK
from seatledger.services.errors import Refused


def cmd_audit_verify(args: argparse.Namespace) -> int:
    with ledger_for(args, read_only=True) as app:
        total = app.max_id()
        with output.progress(args, total, "verifying") as advance:
            report = app.verify(progress=advance)
        data = report.as_dict()
        if report.ok:
            output.say(args, data, f"intact: {report.records} records, {report.checkpoints} "
                                   f"checkpoints, root {report.root.hex()[:16]}...")
            return EXIT_OK
        assert report.problem is not None
        if args.json:
            print(json.dumps(data))
        raise Refused(f"audit verify failed: record {report.problem.record}: "
                      f"{report.problem.reason}")

def register(sub: Any, add: Add, common: argparse.ArgumentParser) -> Any:
    """Add ``audit verify``; returns the ``audit`` subparsers for the other audit commands."""
    audit = sub.add_parser("audit", help="verify the audit seal", parents=[common])
    asub = audit.add_subparsers(dest="action", metavar="ACTION")
    asub.required = True
    add(asub, "verify", cmd_audit_verify,
        "verify every stored record against the signed Merkle seal")
    return asub
