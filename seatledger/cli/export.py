"""``seatledger export``: the daily audit export on the master, and the recipient's side.

Key files: the master signs exports with a minisign key created on first use in
``keys/export-minisign.key`` (0600; ``keys/export-minisign.pub`` goes to the vendor). A
recipient's data directory pins the master's public key on its first import, in
``keys/master-export-minisign.pub``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seatledger.cli import output
from seatledger.cli.exits import EXIT_OK
from seatledger.services.errors import Refused, UsageError

if TYPE_CHECKING:
    from exporters import DayResult


# ------------------------------------------------------------------ commands
def _translated(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """ExportError becomes Refused: one line on stderr, exit 1."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        from exporters import ExportError

        try:
            return fn(args)
        except ExportError as err:
            raise Refused(str(err)) from err

    return run


class _Bar:
    """A tqdm bar on a terminal, nothing otherwise."""

    def __init__(self, bar: Any) -> None:
        self._bar = bar
        self._shown = 0

    def to(self, done: int) -> None:
        if self._bar is not None and done > self._shown:
            self._bar.update(done - self._shown)
            self._shown = done

    def describe(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_description(text)


@contextlib.contextmanager
def _bar(args: argparse.Namespace, desc: str, total: int | None = None) -> Iterator[_Bar]:
    if getattr(args, "json", False) or not sys.stderr.isatty():
        yield _Bar(None)
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="rec", file=sys.stderr, leave=False)
    try:
        yield _Bar(bar)
    finally:
        bar.close()


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad day {text!r}: use YYYY-MM-DD") from None


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except OSError as err:
        raise Refused(f"cannot read {what} {path}: {err.strerror}") from None


@_translated
def cmd_export_run(args: argparse.Namespace) -> int:
    from seatledger.config.settings import data_dir_from, load_config
    from seatledger.config.store import open_ledger
    from seatledger.services.export import load_export_settings, run_exports

    config = load_config(data_dir_from(args.data_dir))
    if "export" in config.raw:
        load_export_settings(config)  # a configuration error before the ledger is opened
    with open_ledger(config) as app, _bar(args, "exporting") as bar:
        yesterday = app.now().date() - timedelta(days=1)
        through = args.day if args.day is not None else yesterday
        if through > yesterday:
            raise UsageError(f"{through} is not over yet (last complete day: {yesterday})")
        offset, current, last = 0, None, 0

        def progress(day: date, done: int) -> None:
            nonlocal offset, current, last
            if day != current:
                offset, current = offset + last, day
                bar.describe(f"exporting {day}")
            last = done
            bar.to(offset + done)

        def show(result: DayResult) -> None:
            if not args.json:
                print(_day_line(result), flush=True)

        results = run_exports(app, config, [through], progress=progress, on_day=show)
    if args.json:
        output.say(args, {"days": [r.as_dict() for r in results]}, "")
    elif not results:
        print(f"nothing to export: the ledger has no records up to {through}")
    return EXIT_OK


def _day_line(result: DayResult) -> str:
    from exporters import DayStatus

    if result.status is DayStatus.ALREADY_EXPORTED:
        return f"{result.day}  already exported (sha256 {result.sha256[:16]})"
    sent = f"{len(result.uploaded)} file(s) uploaded" if result.uploaded else "already delivered"
    return (f"{result.day}  exported {result.records} record(s) "
            f"[{result.first_id}..{result.last_id}] to {result.destination} ({sent})")


def _public_key(args: argparse.Namespace) -> str:
    from seatledger.config.keys import EXPORT_PUB
    from seatledger.config.settings import Layout, data_dir_from
    from seatledger.services.export import PINNED_KEY

    if args.public_key is not None:
        return _read_text(Path(args.public_key), "public key")
    keys = Layout(data_dir_from(args.data_dir)).keys
    for candidate in (keys / PINNED_KEY, keys / EXPORT_PUB):
        if candidate.exists():
            return _read_text(candidate, "public key")
    raise UsageError("give --public-key (the master's export-minisign.pub)")


@_translated
def cmd_export_verify(args: argparse.Namespace) -> int:
    from exporters import ExportError, Verifier

    identity = _read_text(Path(args.identity), "identity") if args.identity else None
    total = _planned_records(args.files)
    with _bar(args, "verifying", total) as bar:
        verifier = Verifier(_public_key(args), identity_text=identity,
                            checkpoint_key=args.checkpoint_key, progress=bar.to)
        try:
            report = verifier.verify(args.files)
        except ExportError as err:
            raise Refused(f"export verify failed: {err}") from err
    data = report.as_dict()
    first, last = data["first_day"], data["last_day"]
    text = (f"verified {data['days']} day(s) {first}..{last} of {report.origin}: "
            f"{report.records} record(s), tree {data['tree_size']}, root {str(data['root'])[:16]}")
    text += ("; chain from the first export" if report.from_first_export
             else f"; chain continues the export of {report.days[0].manifest.previous.day}")
    if not report.records_checked:
        text += "\nrecords not opened: give --identity to check them against the signed root"
    output.say(args, data, text)
    return EXIT_OK


def _planned_records(paths: Sequence[Path]) -> int | None:
    """Records the manifests announce (for the progress bar); None if they cannot be read."""
    from exporters import ExportError, decode_manifest, locate

    try:
        return sum(decode_manifest(d.manifest.read_bytes()).records.count for d in locate(paths))
    except (ExportError, OSError, ValueError):
        return None


@_translated
def cmd_export_decrypt(args: argparse.Namespace) -> int:
    from seatledger.services.export import decrypt_day

    public = _read_text(Path(args.public_key), "public key") if args.public_key else None
    jsonl = decrypt_day(args.file, _read_text(Path(args.identity), "identity"),
                        public_key_text=public)
    if args.output is None or args.output == "-":
        sys.stdout.buffer.write(jsonl)
        sys.stdout.flush()
        return EXIT_OK
    Path(args.output).write_bytes(jsonl)
    records = jsonl.count(b"\n")
    output.say(args, {"file": args.output, "bytes": len(jsonl), "records": records},
               f"wrote {records} record(s) ({len(jsonl)} bytes) to {args.output}")
    return EXIT_OK


@_translated
def cmd_export_import(args: argparse.Namespace) -> int:
    from exporters import ExportError
    from seatledger.config.settings import data_dir_from
    from seatledger.services.export import import_exports

    root = data_dir_from(args.data_dir)
    public = _read_text(Path(args.public_key), "public key") if args.public_key else None
    planned = _planned_records(args.files)
    with _bar(args, "verifying", None if planned is None else 2 * planned) as bar:

        def progress(phase: str, done: int) -> None:
            bar.describe(phase)
            bar.to(done if phase == "verifying" else (planned or 0) + done)

        try:
            report, summary = import_exports(
                args.files, root, identity_text=_read_text(Path(args.identity), "identity"),
                public_key_text=public, progress=progress)
        except ExportError as err:
            raise Refused(f"export import failed: {err}") from err
    data = {**summary.as_dict(), "data_dir": str(root), "origin": report.origin}
    if summary.imported:
        text = (f"imported {len(summary.imported)} day(s) {summary.imported[0]}.."
                f"{summary.imported[-1]} ({summary.records} records) into {root}")
    else:
        text = f"nothing to import: {root} already holds these days"
    text += f"\n  tree {summary.tree_size} records, root {summary.root.hex()[:16]} (as signed)"
    output.say(args, data, text)
    return EXIT_OK


@_translated
def cmd_export_key(args: argparse.Namespace) -> int:
    from ledger.seal.checkpoint import verifier_key
    from seatledger.config.keys import EXPORT_PUB, export_public_key_text, load_public_key
    from seatledger.config.settings import data_dir_from, load_config
    from seatledger.services.export import key_line

    config = load_config(data_dir_from(args.data_dir))
    layout = config.layout
    public = export_public_key_text(layout)
    vkey = verifier_key(config.origin, load_public_key(layout.signing_pub))
    output.say(args, {"minisign_public_key": key_line(public),
                      "file": str(layout.keys / EXPORT_PUB), "checkpoint_key": vkey},
               f"export signing key (send {layout.keys / EXPORT_PUB} to the vendor):\n"
               f"  {key_line(public)}\ncheckpoint key: {vkey}")
    return EXIT_OK


# ------------------------------------------------------------------ parser
def register(sub: Any, add: Any) -> None:
    """Add ``export run|verify|decrypt|import|key`` (see seatledger.cli.build_parser)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", metavar="DIR", default=argparse.SUPPRESS,
                        help="data directory (default: $SEATLEDGER_DATA_DIR or ./seatledger-data)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output")
    export = sub.add_parser("export", help="the daily audit export and the recipient's side",
                            parents=[common])
    esub = export.add_subparsers(dest="action", metavar="ACTION")
    esub.required = True

    p = add(esub, "run", cmd_export_run,
            "export the days not yet exported (through yesterday, or through --day)")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--day", type=_day, default=None, metavar="YYYY-MM-DD",
                      help="export this UTC day (and any earlier day not yet exported)")
    when.add_argument("--catch-up", action="store_true",
                      help="export every day not yet exported, through yesterday (the default)")

    p = add(esub, "verify", cmd_export_verify,
            "check exports: signatures, manifests, the chain across days, and (with --identity) "
            "every record against the signed root")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE",
                   help="export files (any of a day's files) or folders holding them")
    p.add_argument("--public-key", metavar="PUB",
                   help="the master's export-minisign.pub (default: the one in the data dir)")
    p.add_argument("--identity", metavar="KEYFILE", help="the vendor's age identity file")
    p.add_argument("--checkpoint-key", metavar="VKEY",
                   help="pin the log's signed-note key (origin+keyid+base64)")

    p = add(esub, "decrypt", cmd_export_decrypt, "decrypt an export's records to JSON lines")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--identity", required=True, metavar="KEYFILE",
                   help="the vendor's age identity file")
    p.add_argument("--output", "-o", metavar="OUT", help="write here instead of stdout")
    p.add_argument("--public-key", metavar="PUB", help="check the signature with this key first")

    p = add(esub, "import", cmd_export_import,
            "verify exports, then replay them into the data directory (created if needed)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--identity", required=True, metavar="KEYFILE",
                   help="the vendor's age identity file")
    p.add_argument("--public-key", metavar="PUB",
                   help="the master's export-minisign.pub (needed on the first import)")

    add(esub, "key", cmd_export_key,
        "show the master's export signing key (created if needed) and checkpoint key")
