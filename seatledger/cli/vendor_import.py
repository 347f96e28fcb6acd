"""``seatledger vendor import``, ``vendor finding ack`` and ``vendor report watchlist``.

The import takes every new export from the inbox (or pulls it from an SFTP server first),
for all customers at once; see :mod:`seatledger.vendor.imports`. Findings are listed by the
watchlist until someone acknowledges them.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seatledger.cli import output
from seatledger.cli.exits import EXIT_OK

if TYPE_CHECKING:
    from seatledger.vendor.findings import Finding
    from seatledger.vendor.home import VendorConfig
    from seatledger.vendor.imports import ImportSummary

# The vendor's store, the import and the SFTP client are imported by the commands that use
# them: building this module's parser (``seatledger vendor --help``) must not load them.

__all__ = ["register", "register_watchlist"]

SEVERITY_NAMES = {1: "info", 2: "warning", 3: "serious", 4: "critical"}


def _home(args: argparse.Namespace) -> VendorConfig:
    from seatledger.vendor.home import load_vendor_config, vendor_dir_from

    return load_vendor_config(vendor_dir_from(args.vendor_dir))


@contextlib.contextmanager
def _progress(args: argparse.Namespace) -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar on a terminal (never with --json or when piped)."""
    if args.json or not sys.stderr.isatty():
        yield lambda done, total: None
        return
    from tqdm import tqdm

    bar = tqdm(total=0, desc="importing", unit="rec", file=sys.stderr, leave=False)
    shown = 0

    def advance(done: int, total: int) -> None:
        nonlocal shown
        if total != bar.total:
            bar.total = total
            bar.refresh()
        if done > shown:
            bar.update(done - shown)
            shown = done

    try:
        yield advance
    finally:
        bar.close()


def _finding_line(f: Finding) -> str:
    return (f"#{f.id} {SEVERITY_NAMES.get(f.severity, f.severity)} {f.kind} {f.customer}"
            f"{' ' + f.day if f.day else ''}: {f.detail}")


def _summary_text(summary: ImportSummary, pulled: list[str]) -> str:
    imported = summary.of("imported")
    customers = {d.customer for d in imported}
    rate = summary.records / summary.seconds if summary.seconds > 0 else 0.0
    lines = pulled + [f"imported {len(imported)} day(s) of {len(customers)} customer(s): "
                      f"{summary.records:,} records in {summary.seconds:.1f} s "
                      f"({rate:,.0f} records/s)"]
    already = len(summary.of("already"))
    if already:
        lines.append(f"{already} export(s) imported or set aside earlier")
    for status in ("waiting", "quarantined", "refused"):
        for d in summary.of(status):
            lines.append(f"{status}: {d.customer} {d.day} ({Path(d.file).name}): {d.detail}")
    for path in summary.incomplete:
        lines.append(f"incomplete (still uploading?): {path}")
    if summary.findings:
        lines.append(f"{len(summary.findings)} new finding(s):")
        lines += [f"  {_finding_line(f)}" for f in summary.findings]
    return "\n".join(lines)


def cmd_import(args: argparse.Namespace) -> int:
    from seatledger.vendor.imports import VendorImport
    from seatledger.vendor.registry import VendorStore
    from seatledger.vendor.sftp_pull import SftpSource, pull

    config = _home(args)
    inboxes = [Path(p).expanduser().absolute() for p in args.inbox] if args.inbox else [
        config.inbox or config.layout.inbox]
    pulled: list[str] = []
    if args.sftp:
        source = SftpSource.parse(args.sftp)
        inboxes[0].mkdir(parents=True, exist_ok=True, mode=0o700)
        result = pull(source, inboxes[0], known_hosts=Path(args.known_hosts).expanduser(),
                      identity=Path(args.identity).expanduser() if args.identity else None)
        pulled.append(f"pulled {len(result.downloaded)} file(s) from {source} into "
                      f"{inboxes[0]}")
        pulled += [f"conflict: {name} is in the inbox with other content; left alone"
                   for name in result.conflicts]
    with VendorStore.open(config) as store, _progress(args) as progress:
        summary = VendorImport(config, store, progress=progress).run(inboxes)
    output.say(args, summary.as_dict(), _summary_text(summary, pulled))
    return EXIT_OK


def cmd_finding_ack(args: argparse.Namespace) -> int:
    from seatledger.vendor.findings import Findings
    from seatledger.vendor.registry import VendorStore

    with VendorStore.open(_home(args)) as store:
        finding = Findings(store.engine).ack(args.id, args.note)
    output.say(args, finding.as_dict(),
               f"finding #{finding.id} acknowledged at {finding.acked_at}: {finding.ack_note}")
    return EXIT_OK


def cmd_watchlist(args: argparse.Namespace) -> int:
    from seatledger.vendor.findings import Findings
    from seatledger.vendor.registry import VendorStore

    with VendorStore.open(_home(args)) as store:
        watch = Findings(store.engine).watchlist()
    if args.customer:
        watch = [f for f in watch if f.customer == args.customer]
    output.say(args, {"findings": [f.as_dict() for f in watch]}, output.table(
        ["id", "severity", "kind", "customer", "day", "opened", "detail"],
        [[f.id, SEVERITY_NAMES.get(f.severity, f.severity), f.kind, f.customer, f.day or "",
          f.opened_at, f.detail] for f in watch]) if watch else "no open findings")
    return EXIT_OK


def _id_arg(text: str) -> int:
    try:
        value = int(text.lstrip("#"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a finding id: {text!r}") from None
    return value


def register(vsub: Any, vadd: Any) -> None:
    """Add ``vendor import`` and ``vendor finding ack`` (``vadd(vsub, name, fn, help)`` gives
    a parser with --vendor-dir, --data-dir and --json)."""
    p = vadd(vsub, "import", cmd_import,
             "import every customer's new exports from the inbox (or an SFTP server)")
    p.add_argument("--inbox", metavar="DIR", action="append",
                   help="folder the exports arrive in (default: vendor.toml's [import] inbox); "
                        "may be given more than once")
    p.add_argument("--sftp", metavar="URL",
                   help="first pull new files from sftp://user@host:port/dir into the inbox")
    p.add_argument("--known-hosts", metavar="FILE", default="~/.ssh/known_hosts",
                   help="the SFTP server must be in this file (default: ~/.ssh/known_hosts)")
    p.add_argument("--identity", metavar="FILE", help="SSH private key for --sftp")
    f = vsub.add_parser("finding", help="acknowledge an abuse finding")
    fsub = f.add_subparsers(dest="finding_command", metavar="ACTION")
    fsub.required = True
    a = vadd(fsub, "ack", cmd_finding_ack, "acknowledge a finding (recorded; it leaves the "
             "watchlist)")
    a.add_argument("id", type=_id_arg, metavar="ID")
    a.add_argument("--note", required=True, help="why it is acknowledged")


def register_watchlist(report_sub: Any, vadd: Any) -> None:
    """Add ``watchlist`` to the ``vendor report`` subparsers."""
    p = vadd(report_sub, "watchlist", cmd_watchlist,
             "open abuse findings, most severe first, then most recent")
    p.add_argument("--customer", help="only this customer's findings")
