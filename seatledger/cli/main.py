"""The ``seatledger`` command line: the parser of every command group, and the one place
that turns errors into one line on stderr and an exit status.

Exit status: 0 success, 1 refused or failed, 2 bad usage. Errors are one line on stderr.

Start-up is kept short (a dialler runs ``seatledger seat acquire`` per agent log-on): this
module imports no command group. :data:`_GROUPS` knows every top-level command and its help
line; a first parse with placeholders for all of them finds the command (or answers
``--help`` and top-level usage errors, which need nothing more), then only the module that
defines it is imported to build the real parser. The errors are recognised without
importing the modules that define them (:func:`_exit_status`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from seatledger.cli.exits import EXIT_FAILED, EXIT_USAGE


class _Group(NamedTuple):
    """A module of :mod:`seatledger.cli` and the top-level commands its ``register`` adds,
    with their help lines, in its order."""

    module: str
    commands: tuple[tuple[str, str], ...]
    with_modules: tuple[str, ...] = ()  # modules that add subcommands under this one's


# In the order of ``seatledger --help``. The help lines repeat the modules' own (which are
# the ones shown by ``seatledger COMMAND --help``); test_cli_startup.py pins them equal.
_GROUPS: tuple[_Group, ...] = (
    _Group("datadir", (("init", "create a data directory: config, keys, CA and the store"),
                       ("storage", "bytes used, per event, and projected per agent over six "
                                   "months"))),
    _Group("licence", (("licence", "request, install or show the vendor-signed licence"),)),
    _Group("site", (("site", "enrol, revoke or list sites; show or release seats"),)),
    _Group("audit", (("audit", "verify the audit seal"),), with_modules=("reports",)),
    _Group("reports", (("status", "live concurrency and grace status"),
                       ("report", "usage statements (table, csv, json, html)"),
                       ("projections", "the read models fed from the ledger"))),
    _Group("export", (("export", "the daily audit export and the recipient's side"),)),
    _Group("doctor", (("doctor", "check a data directory: config, key and file modes, disk, "
                                 "seal, export, licence, clock"),)),
    _Group("daemons", (("master", "run the master daemon (until SIGINT/SIGTERM)"),
                       ("slave", "run a slave connector with its local socket"))),
    _Group("seat", (("seat", "talk to a running slave, as a dialler would"),)),
    _Group("vendor", (("vendor", "the vendor's workstation: licences, customers' exports, "
                                 "billing and abuse analytics"),)),
    _Group("demo", (("demo", "run the whole system end to end on a virtual clock"),)),
)

def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or, given ``command``, of that one only: the module that
    defines it is imported, and every other command is a placeholder that shows its help line
    in ``seatledger --help`` but parses nothing. (A name that is no command gives a parser of
    placeholders only, which is enough to find the command a command line names.)"""
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

    load = _modules_for(command)
    audit_sub: Any = None
    for group in _GROUPS:
        if group.module not in load:
            for name, help_text in group.commands:
                sub.add_parser(name, help=help_text, add_help=False)
            continue
        module: Any = importlib.import_module(f"seatledger.cli.{group.module}")
        if group.module == "audit":
            audit_sub = module.register(sub, add, common)
        elif group.module == "reports":
            # It adds ``audit replay|history|why-refused``: to a throwaway parser when the
            # command is not ``audit``.
            if audit_sub is None:
                audit_sub = argparse.ArgumentParser().add_subparsers()
            module.register(sub, add, audit_sub)
        elif group.module == "export":
            module.register(sub, add)
        else:
            module.register(sub, add, common)
    return parser


def _modules_for(command: str | None) -> set[str]:
    """The modules to import to parse ``command`` (None: every command)."""
    if command is None:
        return {group.module for group in _GROUPS}
    for group in _GROUPS:
        if any(name == command for name, _ in group.commands):
            return {group.module, *group.with_modules}
    return set()


def _command(argv: list[str]) -> str:
    """The top-level command ``argv`` names. Exits as the full parser would on ``--help`` or
    a usage error before the command (the top level is the same; placeholders list the
    commands)."""
    args, _rest = build_parser("").parse_known_args(argv)
    return str(args.command)


def main(argv: Sequence[str] | None = None) -> int:
    os.umask(0o077)  # data, state and key files are the owner's only (0600, dirs 0700)
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command(arguments)).parse_args(arguments)
    for name, default in (("data_dir", None), ("json", False), ("vendor_dir", None)):
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        try:
            return int(args.fn(args))
        except BaseExceptionGroup as group:
            raise _leaf(group) from group
    except (Exception, KeyboardInterrupt) as error:
        status = _exit_status(error)
        if status is None:
            raise
        return status


def _leaf(group: BaseExceptionGroup) -> BaseException:
    """The one error a daemon's nursery failed with (trio wraps it in groups)."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


# The errors a command ends on with one line, by (defining module, class). An error can only
# be one of these if its module has run, so none is imported just to check.
_USAGE_ERRORS: tuple[tuple[str, str], ...] = (("seatledger.services.errors", "UsageError"),)
_FAILURES: tuple[tuple[str, str], ...] = (
    ("seatledger.services.errors", "Refused"),
    ("ledger.errors", "LedgerError"),
    ("seatledger.config.settings", "ConfigError"),
    ("exporters.errors", "ExportError"),
    ("transport._errors", "ProtocolError"),
    ("seatledger.config.lock", "DataDirBusyError"),
    ("seatledger.slave.errors", "SlaveError"),
    ("seatledger.vendor.registry", "RegistryError"),
)


def _is_one_of(error: BaseException, classes: tuple[tuple[str, str], ...]) -> bool:
    for module_name, class_name in classes:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(cls, type) and isinstance(error, cls):
            return True
    return False


def _exit_status(error: BaseException) -> int | None:
    """Print ``error`` as one line on stderr and return the exit status, or return None for
    an error that is a bug (the caller lets it propagate)."""
    if _is_one_of(error, _USAGE_ERRORS):
        print(f"seatledger: {error}", file=sys.stderr)
        return EXIT_USAGE
    if _is_one_of(error, _FAILURES):
        print(f"seatledger: {error}", file=sys.stderr)
        return EXIT_FAILED
    if isinstance(error, KeyboardInterrupt):
        print("seatledger: interrupted", file=sys.stderr)
        return 130
    if isinstance(error, OSError):
        where = f" {error.filename}" if getattr(error, "filename", None) else ""
        print(f"seatledger: {error.strerror or error}{':' if where else ''}{where}",
              file=sys.stderr)
        return EXIT_FAILED
    return None


if __name__ == "__main__":
    sys.exit(main())
