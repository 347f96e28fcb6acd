"""The ``seatledger`` command line: the parser of every command group, and the one place
that turns errors into one line on stderr and an exit status.

Exit status: 0 success, 1 refused or failed, 2 bad usage. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from exporters.errors import ExportError
from ledger import LedgerError
from seatledger.cli import (
    audit,
    daemons,
    datadir,
    demo,
    export,
    licence,
    reports,
    seat,
    site,
    vendor,
)
from seatledger.cli.exits import EXIT_FAILED, EXIT_USAGE
from seatledger.config.lock import DataDirBusyError
from seatledger.config.settings import ConfigError
from seatledger.services.errors import Refused, UsageError
from seatledger.slave.errors import SlaveError
from seatledger.vendor.registry import RegistryError
from transport import ProtocolError


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", metavar="DIR", default=argparse.SUPPRESS,
                        help="data directory (default: $SEATLEDGER_DATA_DIR or ./seatledger-data)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output")

    parser = argparse.ArgumentParser(
        prog="seatledger", parents=[common],
        description="Event-sourced licensing ledger for multi-site concurrent-seat licences.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(parent: Any, name: str, fn: Callable[[argparse.Namespace], int],
            help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, parents=[common], help=help_text,
                                                       description=help_text)
        p.set_defaults(fn=fn)
        return p

    datadir.register(sub, add, common)
    licence.register(sub, add, common)
    site.register(sub, add, common)
    audit_sub = audit.register(sub, add, common)
    reports.register(sub, add, audit_sub)
    export.register(sub, add)
    daemons.register(sub, add, common)
    seat.register(sub, add, common)
    vendor.register(sub, add, common)
    demo.register(sub, add, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.umask(0o077)  # data, state and key files are the owner's only (0600, dirs 0700)
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, default in (("data_dir", None), ("json", False), ("vendor_dir", None)):
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        try:
            return int(args.fn(args))
        except BaseExceptionGroup as group:
            raise _leaf(group) from group
    except UsageError as e:
        print(f"seatledger: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (Refused, LedgerError, ConfigError, ExportError, ProtocolError,
            DataDirBusyError, SlaveError, RegistryError) as e:
        print(f"seatledger: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("seatledger: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        print(f"seatledger: {e.strerror or e}{':' if where else ''}{where}", file=sys.stderr)
        return EXIT_FAILED


def _leaf(group: BaseExceptionGroup) -> BaseException:
    """The one error a daemon's nursery failed with (trio wraps it in groups)."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


if __name__ == "__main__":
    sys.exit(main())
