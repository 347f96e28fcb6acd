"""``seatledger export``: the daily audit export on the master, and the recipient's side.

Also the functions the master daemon and the demo call: :func:`export_due_days` and
:func:`run_exports` (the daily run), :func:`export_to_folder` and :func:`import_exports`.

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
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from exporters import (
    DailyExport,
    DayResult,
    DayStatus,
    ExportConfigError,
    ExportError,
    ExportSettings,
    ImportSummary,
    Outbox,
    SigningKey,
    Verifier,
    VerifyReport,
    decrypt_export,
    due_days,
    generate_signing_key,
    import_verified,
    load_signing_key,
    locate,
    make_sink,
    parse_export_settings,
    verify_signature,
)
from exporters.chain import parse_verifier_key
from exporters.envelope import export_comment
from exporters.sinks import LocalSink, Sink
from ledger import LedgerApp
from ledger.seal.checkpoint import verifier_key
from seatledger.bootstrap import open_ledger
from seatledger.cli import output
from seatledger.cli.main import EXIT_OK, Refused, UsageError
from seatledger.config.settings import Config, ConfigError, Layout, data_dir_from, load_config

__all__ = [
    "ensure_export_keys",
    "export_due_days",
    "export_public_key_text",
    "export_to_folder",
    "import_exports",
    "load_export_settings",
    "next_export_at",
    "register",
    "run_exports",
]

EXPORTS_DIR = "exports"
EXPORT_KEY = "export-minisign.key"
EXPORT_PUB = "export-minisign.pub"
PINNED_KEY = "master-export-minisign.pub"
ORIGIN_CHECKPOINT_KEY = "origin-checkpoint.pub"


# ------------------------------------------------------------------ for the daemon and demo
def load_export_settings(config: Config) -> ExportSettings:
    """The validated ``[export]`` table. Raises ConfigError with a one-line reason."""
    table = config.raw.get("export")
    if table is None:
        raise ConfigError(f"{config.layout.config}: no [export] table (set recipients and "
                          "[export.sink]; see docs/export-format.md)")
    try:
        return parse_export_settings(table, config.root, where=str(config.layout.config))
    except ExportConfigError as err:
        raise ConfigError(str(err)) from err


def ensure_export_keys(layout: Layout) -> SigningKey:
    """The master's minisign export key, created (0600, with its .pub) if there is none.

    Raises:
        KeyMaterialError: the key file is unreadable or damaged.
    """
    secret, public = layout.keys / EXPORT_KEY, layout.keys / EXPORT_PUB
    if secret.exists():
        key = load_signing_key(secret)
        if not public.exists():
            public.write_text(key.public_key_text)
        return key
    layout.keys.mkdir(mode=0o700, parents=True, exist_ok=True)
    return generate_signing_key(secret, public)


def export_public_key_text(layout: Layout) -> str:
    """The master's minisign public key (created with the key pair if needed), for the vendor."""
    ensure_export_keys(layout)
    return (layout.keys / EXPORT_PUB).read_text()


def export_due_days(app: LedgerApp, config: Config, today: date) -> list[date]:
    """Days the daily run should export now: over, not exported yet, oldest first. None when
    the configuration has no ``[export]`` table."""
    if "export" not in config.raw:
        return []
    return due_days(app, today)


def next_export_at(config: Config, after: datetime) -> datetime:
    """The first configured daily run time (UTC) strictly after ``after``."""
    at = load_export_settings(config).time
    after = after.astimezone(UTC)
    candidate = datetime.combine(after.date(), at)
    return candidate if candidate > after else candidate + timedelta(days=1)


def run_exports(
    app: LedgerApp,
    config: Config,
    days: Sequence[date],
    *,
    sink: Sink | None = None,
    progress: Callable[[date, int], None] | None = None,
    on_day: Callable[[DayResult], None] | None = None,
) -> list[DayResult]:
    """Export ``days`` (and any earlier day not exported yet) to the configured sink, in order.

    Raises:
        ConfigError: the ``[export]`` settings are wrong.
        ExportError: building or delivering failed (days before it stay exported).
        LedgerError: recording the export failed.
    """
    if not days:
        return []
    settings = load_export_settings(config)
    exporter = DailyExport(
        app, sink if sink is not None else make_sink(settings.sink),
        Outbox(config.root / EXPORTS_DIR), recipients=list(settings.recipients),
        signing_key=ensure_export_keys(config.layout), progress=progress, on_day=on_day,
    )
    return exporter.run(max(days))


def export_to_folder(app: LedgerApp, layout: Layout, folder: Path, recipients: list[str],
                     through: date | None = None) -> list[DayResult]:
    """Export every day over (or up to ``through``) into ``folder``, whatever the config says.

    The demo's vendor delivery. Raises ExportError, LedgerError.
    """
    through = through or app.now().date() - timedelta(days=1)
    folder.mkdir(parents=True, exist_ok=True)
    exporter = DailyExport(app, LocalSink(folder), Outbox(layout.root / EXPORTS_DIR),
                           recipients=recipients, signing_key=ensure_export_keys(layout))
    return exporter.run(through)


def import_exports(
    paths: Sequence[Path],
    root: Path,
    *,
    identity_text: str,
    public_key_text: str | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> tuple[VerifyReport, ImportSummary]:
    """Verify exports, then replay them into the data directory ``root`` (created if needed).

    The master's public key is pinned in ``root`` on the first import; later imports may
    omit it and must not name another. ``progress(phase, records)`` reports both phases.

    Raises:
        ExportError: verification or replay failed. UsageError: no key to check against.
        Refused: ``root`` trusts another key or holds another origin's history.
    """
    layout = Layout(root)
    pinned = layout.keys / PINNED_KEY
    trusted = pinned.read_text() if pinned.exists() else None
    if public_key_text is None:
        if trusted is None:
            raise UsageError(f"first import into {root}: give --public-key (the master's "
                             f"keys/{EXPORT_PUB})")
        public_key_text = trusted
    elif trusted is not None and _key_line(trusted) != _key_line(public_key_text):
        raise Refused(f"{root} already trusts another master key ({pinned})")
    verifier = Verifier(public_key_text, identity_text=identity_text,
                        progress=(lambda n: progress("verifying", n)) if progress else None)
    report = verifier.verify(paths)
    if layout.config.exists():
        origin = load_config(root).origin
        if origin != report.origin:
            raise Refused(f"{root} holds the history of {origin!r}; these exports are of "
                          f"{report.origin!r}")
    else:
        from seatledger.demo.story import init_data_dir  # the recipient's fresh data directory

        init_data_dir(root, origin=report.origin)
    if trusted is None:
        pinned.write_text(public_key_text)
    _pin_checkpoint_key(layout, report)
    with open_ledger(load_config(root)) as app:
        summary = import_verified(
            app, verifier, report,
            progress=(lambda n: progress("importing", n)) if progress else None)
    return report, summary


def _pin_checkpoint_key(layout: Layout, report: VerifyReport) -> None:
    """Keep the master's checkpoint key (PEM) beside the recipient's own keys: the recorded
    AuditCheckpointSigned notes in the imported history are signed with it, not with the
    recipient's key.

    Raises:
        Refused: another checkpoint key is pinned already.
    """
    _, key = parse_verifier_key(report.days[-1].manifest.checkpoint.key)
    pem = key.public_bytes(serialization.Encoding.PEM,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    path = layout.keys / ORIGIN_CHECKPOINT_KEY
    if not path.exists():
        path.write_bytes(pem)
    elif path.read_bytes() != pem:
        raise Refused(f"{layout.root} already holds the history of another checkpoint key "
                      f"({path})")


def _key_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.startswith("untrusted comment:")]
    return lines[0] if lines else ""


# ------------------------------------------------------------------ commands
def _translated(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """ExportError becomes Refused: one line on stderr, exit 1."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
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
    config = load_config(data_dir_from(args.data_dir))
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
    if result.status is DayStatus.ALREADY_EXPORTED:
        return f"{result.day}  already exported (sha256 {result.sha256[:16]})"
    sent = f"{len(result.uploaded)} file(s) uploaded" if result.uploaded else "already delivered"
    return (f"{result.day}  exported {result.records} record(s) "
            f"[{result.first_id}..{result.last_id}] to {result.destination} ({sent})")


def _public_key(args: argparse.Namespace) -> str:
    if args.public_key is not None:
        return _read_text(Path(args.public_key), "public key")
    keys = Layout(data_dir_from(args.data_dir)).keys
    for candidate in (keys / PINNED_KEY, keys / EXPORT_PUB):
        if candidate.exists():
            return _read_text(candidate, "public key")
    raise UsageError("give --public-key (the master's export-minisign.pub)")


@_translated
def cmd_export_verify(args: argparse.Namespace) -> int:
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
    from exporters import decode_manifest

    try:
        return sum(decode_manifest(d.manifest.read_bytes()).records.count for d in locate(paths))
    except (ExportError, OSError, ValueError):
        return None


@_translated
def cmd_export_decrypt(args: argparse.Namespace) -> int:
    import gzip
    import zlib

    days = locate([args.file])
    if len(days) != 1:
        raise UsageError("give one export file")
    files = days[0]
    try:
        ciphertext = files.data.read_bytes()
    except OSError as err:
        raise Refused(f"cannot read {files.data}: {err.strerror}") from None
    if args.public_key is not None:
        signature = _read_bytes(files.data_signature)
        verify_signature(ciphertext, signature, _read_text(Path(args.public_key), "public key"),
                         expected_comment=export_comment(files.data.name, files.day))
    compressed = decrypt_export(ciphertext, _read_text(Path(args.identity), "identity"))
    try:
        jsonl = gzip.decompress(compressed)
    except (OSError, EOFError, zlib.error) as err:
        raise Refused(f"{files.data.name}: not gzip, or damaged ({err})") from None
    if args.output is None or args.output == "-":
        sys.stdout.buffer.write(jsonl)
        sys.stdout.flush()
        return EXIT_OK
    Path(args.output).write_bytes(jsonl)
    records = jsonl.count(b"\n")
    output.say(args, {"file": args.output, "bytes": len(jsonl), "records": records},
               f"wrote {records} record(s) ({len(jsonl)} bytes) to {args.output}")
    return EXIT_OK


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise Refused(f"cannot read {path}: {err.strerror}") from None


@_translated
def cmd_export_import(args: argparse.Namespace) -> int:
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
    config = load_config(data_dir_from(args.data_dir))
    layout = config.layout
    public = export_public_key_text(layout)
    from seatledger.config.keys import load_public_key

    vkey = verifier_key(config.origin, load_public_key(layout.signing_pub))
    output.say(args, {"minisign_public_key": _key_line(public),
                      "file": str(layout.keys / EXPORT_PUB), "checkpoint_key": vkey},
               f"export signing key (send {layout.keys / EXPORT_PUB} to the vendor):\n"
               f"  {_key_line(public)}\ncheckpoint key: {vkey}")
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
