"""The daily audit export on the master, and the recipient's import (use cases, no printing).

The master daemon's schedule calls :func:`export_due_days`, :func:`next_export_at` and
:func:`run_exports` (to where the installed licence directs, :func:`directed_settings`);
the demo calls :func:`run_exports` and :func:`import_exports`.

Key files: the master signs exports with a minisign key created on first use in
``keys/export-minisign.key`` (0600; ``keys/export-minisign.pub`` goes to the vendor). A
recipient's data directory pins the master's public key on its first import, in
``keys/master-export-minisign.pub``.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

from cryptography.hazmat.primitives import serialization

from exporters import (
    DailyExport,
    DayResult,
    ExportConfigError,
    ExportSettings,
    ImportSummary,
    Outbox,
    Verifier,
    VerifyReport,
    decrypt_export,
    due_days,
    import_verified,
    locate,
    make_sink,
    parse_export_settings,
    verify_signature,
)
from exporters.chain import parse_verifier_key
from exporters.envelope import export_comment, public_key_line
from exporters.sinks import LocalSink, Sink
from ledger import LedgerApp
from seatledger.config.keys import EXPORT_PUB, ensure_export_keys
from seatledger.config.settings import Config, ConfigError, Layout, load_config
from seatledger.config.store import open_ledger
from seatledger.services.datadir import init_data_dir
from seatledger.services.errors import Refused, UsageError

EXPORTS_DIR = "exports"
PINNED_KEY = "master-export-minisign.pub"
ORIGIN_CHECKPOINT_KEY = "origin-checkpoint.pub"


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


def directed_settings(config: Config, app: LedgerApp) -> tuple[ExportSettings, str | None]:
    """Where the daily export goes: where the installed licence directs it, with the
    credentials of ``[export.sink]``, to the licence's recipients plus any the configuration
    adds; or, under a licence that directs nothing, the ``[export]`` table alone. The second
    value is the destination deliveries are recorded as (the licence's URL), or None.

    Raises:
        ConfigError: no destination at all, a bad ``[export]`` table, or credentials missing
            for the destination the licence names.
    """
    licence = app.licence if app.has_licence else None
    if licence is None or not licence.export_destination:
        return load_export_settings(config), None
    destination = licence.export_destination
    table = dict(config.raw.get("export") or {})
    sink = dict(table.get("sink") or {})
    url = urlsplit(destination)
    kinds = {"file": "folder", "sftp": "sftp", "ftp": "ftp", "ftps": "ftps"}
    if url.scheme not in kinds:
        raise ConfigError(f"the licence directs exports to {destination}, which this version "
                          "cannot deliver to")
    kind = kinds[url.scheme]
    directed: dict[str, object] = {
        key: value for key, value in sink.items()
        if key in ("username", "key_file", "password_file", "ca_file", "known_hosts",
                   "timeout", "attempts", "first_delay", "max_delay")}
    directed["kind"] = kind
    if kind == "folder":
        directed = {"kind": "folder", "path": unquote(url.path)}
    else:
        # The URL's path is absolute on the server; "/~/dir" is relative to the login's home.
        path = unquote(url.path)
        remote_dir = path[3:] or "." if path.startswith("/~/") else path or "."
        directed.update(host=url.hostname or "", remote_dir=remote_dir)
        if url.port:
            directed["port"] = url.port
        if url.username:
            directed["username"] = unquote(url.username)
        if kind == "sftp" and licence.export_host_key:
            directed["host_key"] = licence.export_host_key  # pinned: no known_hosts needed
    extra = [r for r in table.get("recipients") or [] if isinstance(r, str)]
    recipients = list(dict.fromkeys([*(licence.export_recipients or []), *extra]))
    table.update(recipients=recipients, sink=directed)
    try:
        settings = parse_export_settings(table, config.root, where=f"{config.layout.config} "
                                         f"(exports directed by the licence to {destination})")
    except ExportConfigError as err:
        raise ConfigError(str(err)) from err
    return settings, destination


def export_due_days(app: LedgerApp, config: Config, today: date) -> list[date]:
    """Days the daily run should export now: over, not exported yet, oldest first. None when
    neither the configuration nor the licence says where exports go."""
    if "export" not in config.raw and not (app.has_licence and app.licence.export_destination):
        return []
    return due_days(app, today)


def next_export_at(config: Config, after: datetime) -> datetime:
    """The first configured daily run time (UTC, default 01:30) strictly after ``after``."""
    at = (load_export_settings(config).time if "export" in config.raw
          else time(1, 30, tzinfo=UTC))
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
    settings, destination = directed_settings(config, app)
    exporter = DailyExport(
        app, sink if sink is not None else make_sink(settings.sink),
        Outbox(config.root / EXPORTS_DIR), recipients=list(settings.recipients),
        signing_key=ensure_export_keys(config.layout), progress=progress, on_day=on_day,
        destination=destination,
    )
    return exporter.run(max(days))


def export_to_folder(app: LedgerApp, layout: Layout, folder: Path, recipients: list[str],
                     through: date | None = None) -> list[DayResult]:
    """Export every day over (or up to ``through``) into ``folder``, whatever the config and
    the licence say (deliveries recorded as that folder's URL). Raises ExportError,
    LedgerError."""
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
    elif trusted is not None and key_line(trusted) != key_line(public_key_text):
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
        init_data_dir(root, origin=report.origin, history=False)
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


key_line = public_key_line  # what the export commands print and compare



def decrypt_day(path: Path, identity_text: str, *, public_key_text: str | None = None) -> bytes:
    """One day's records as JSON lines: its signature checked first (with the master's
    public key, when given), then decrypted with the vendor's age identity and unpacked.

    Raises:
        UsageError: ``path`` is not one day's export. Refused: a file cannot be read or is
        not what it says. ExportError: a bad signature, or the identity does not open it.
    """
    days = locate([path])
    if len(days) != 1:
        raise UsageError("give one export file")
    files = days[0]
    ciphertext = _read(files.data)
    if public_key_text is not None:
        verify_signature(ciphertext, _read(files.data_signature), public_key_text,
                         expected_comment=export_comment(files.data.name, files.day))
    compressed = decrypt_export(ciphertext, identity_text)
    try:
        return gzip.decompress(compressed)
    except (OSError, EOFError, zlib.error) as err:
        raise Refused(f"{files.data.name}: not gzip, or damaged ({err})") from None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise Refused(f"cannot read {path}: {err.strerror}") from None


__all__ = [
    "PINNED_KEY",
    "directed_settings",
    "export_due_days",
    "export_to_folder",
    "decrypt_day",
    "import_exports",
    "key_line",
    "load_export_settings",
    "next_export_at",
    "run_exports",
]
