"""The composition root: the one place that wires a master, a slave, the read-model follower
and the export schedule from a data directory. Daemons, the demo and tests build through it.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import attrs

from exporters import DayResult
from ledger import LedgerApp, ManualClock
from ledger.persistence.fencing import Fence
from seatledger.alerts import Dispatcher, load_alert_settings
from seatledger.config.bundle import Bundle
from seatledger.config.ca import crl_path, load_crl
from seatledger.config.settings import Config, ConfigError
from seatledger.config.store import open_ledger
from seatledger.master.ledger_process import LedgerProcess
from seatledger.master.server import Master, MasterSettings
from seatledger.services.export import (
    export_due_days,
    load_export_settings,
    next_export_at,
    run_exports,
)
from seatledger.services.sites import admission_check
from seatledger.slave.chained import ChainedConnector
from seatledger.slave.connector import SlaveConnector, SlaveSettings
from transport.tls import server_context


def wall_clock() -> datetime:
    return datetime.now(UTC)


def master_context(config: Config, app: LedgerApp) -> ssl.SSLContext:
    """The master's TLS server context: its certificate, the data directory's CA, and the
    handshake's check that a client certificate belongs to an enrolled, unrevoked site."""
    ca_dir = config.layout.ca_dir
    return server_context(ca_dir / "ca.crt", ca_dir / "master.crt", ca_dir / "master.key",
                          revoked=admission_check(app), crl_pem=load_crl(ca_dir))


def standby_context(config: Config) -> ssl.SSLContext:
    """A standby master's TLS context: the same certificate and CA, and the CA's revocation
    list; no ledger is loaded, so enrolment is not checked (a standby serves no site)."""
    ca_dir = config.layout.ca_dir
    return server_context(ca_dir / "ca.crt", ca_dir / "master.crt", ca_dir / "master.key",
                          crl_pem=load_crl(ca_dir))


def open_fenced_ledger(config: Config, fence: Fence, clock: ManualClock) -> LedgerApp:
    """The data directory's (PostgreSQL) ledger for an active master: every commit runs
    ``fence`` in its transaction (the lease's term; see :mod:`seatledger.master.lease`).
    Raises LedgerError."""
    return open_ledger(config, clock=clock, fence=fence)


def context_refresher(config: Config, app: LedgerApp) -> Callable[[], ssl.SSLContext | None]:
    """A new server context whenever the CA's revocation list changed (``site revoke``
    rewrites it while the master runs), else None."""
    path = crl_path(config.layout.ca_dir)
    seen = _mtime(path)

    def refresh() -> ssl.SSLContext | None:
        nonlocal seen
        now = _mtime(path)
        if now == seen:
            return None
        seen = now
        return master_context(config, app)

    return refresh


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def master_settings(config: Config, **overrides: object) -> MasterSettings:
    settings = MasterSettings(heartbeat_interval=config.heartbeat_seconds,
                              missed_heartbeats=config.missed_heartbeats, origin=config.origin)
    return attrs.evolve(settings, **overrides)  # type: ignore[arg-type]


def build_master(config: Config, *, now: Callable[[], datetime] = wall_clock,
                 settings: MasterSettings | None = None,
                 app: LedgerApp | None = None,
                 upstream: ChainedConnector | None = None,
                 writer_process: bool | None = None) -> Master:
    """A master over the data directory's ledger (opened here unless ``app`` is given, in
    which case its clock must be a :class:`ManualClock`), chained under ``upstream`` (by
    default the one ``[upstream] bundle`` names, if any). ``writer_process``: commit in a
    writer process of its own (default: ``[master] writer`` when the ledger is opened here,
    else no). Raises LedgerError, ConfigError."""
    # A ledger the caller opened (the demo's on its virtual clock, a standby's fenced one)
    # is written here unless told otherwise.
    elsewhere = (config.writer == "process" and app is None if writer_process is None
                 else writer_process)
    process = None
    if app is None:
        # With a writer process, this process's copy of the licence is the one the writer
        # loads: the store is read once, not twice, before the master serves; and the
        # writer starts first, so that it loads while this process starts up.
        app = open_ledger(config, clock=ManualClock(now()), read_only=elsewhere)
        if elsewhere:
            process = LedgerProcess(ledger_writer_command(config), app)
            process.spawn()
    clock = app.timekeeper.clock
    if not isinstance(clock, ManualClock):
        raise TypeError("a master drives the ledger's clock: open it with a ManualClock")
    if not elsewhere:
        app.licence  # noqa: B018 - a master needs a licence: fail now with a clear error
    master = Master(app, clock, master_context(config, app),
                    settings=settings or master_settings(config), now=now,
                    upstream=upstream or upstream_connector(config),
                    process=process or (LedgerProcess(ledger_writer_command(config), app)
                                        if elsewhere else None))
    master.refresh_context = context_refresher(config, app)
    return master


def upstream_connector(config: Config) -> ChainedConnector | None:
    """A chained master's link to its upstream (``[upstream] bundle``), or None. Its
    journal and remembered limits are kept in ``<data-dir>/upstream/``. Raises ConfigError."""
    if config.upstream_bundle is None:
        return None
    bundle = Bundle.read(config.upstream_bundle)
    settings = SlaveSettings(answer_timeout=config.upstream_answer_timeout)
    return ChainedConnector(bundle, config.root / "upstream", settings=settings)


def build_alerts(config: Config) -> Dispatcher:
    """The alert dispatcher for ``[alerts]`` (no channel, so nothing sent, without it).
    Raises ConfigError."""
    return load_alert_settings(config).dispatcher(master=config.origin)


def build_slave(bundle: Bundle, state_dir: Path, *, settings: SlaveSettings | None = None,
                now: Callable[[], datetime] | None = None) -> SlaveConnector:
    return SlaveConnector(bundle, state_dir, settings=settings or SlaveSettings(), now=now)


def ledger_writer_command(config: Config) -> list[str]:
    """The ledger writer process's command line (a child process of the master, which adds
    its socket and its own pid)."""
    return [sys.executable, "-m", "seatledger.daemons.ledger_writer",
            "--data-dir", str(config.root)]


def follower_command(config: Config, parent_pid: int) -> list[str]:
    """The read-model follower's command line (a child process of the master)."""
    return [sys.executable, "-m", "seatledger.cli", "projections", "follow",
            "--data-dir", str(config.root), "--parent-pid", str(parent_pid)]


@attrs.frozen
class ExportSchedule:
    """The daily audit export, bound to a data directory's ``[export]`` settings."""

    config: Config

    def next_run(self, after: datetime) -> datetime:
        return next_export_at(self.config, after)

    def due(self, app: LedgerApp, today: date) -> list[date]:
        return export_due_days(app, self.config, today)

    def run(self, app: LedgerApp, days: list[date]) -> list[DayResult]:
        return run_exports(app, self.config, days)


def export_schedule(config: Config) -> ExportSchedule | None:
    """The schedule, or None when the configuration has no ``[export]`` table.

    Raises:
        ConfigError: the ``[export]`` table is there but wrong.
    """
    if "export" in config.raw:
        load_export_settings(config)
    # Also without an [export] table: an installed licence may direct where exports go.
    return ExportSchedule(config)


__all__ = ["ConfigError", "ExportSchedule", "build_alerts", "build_master", "build_slave", "export_schedule",
           "follower_command", "master_context", "master_settings", "open_fenced_ledger",
           "standby_context", "wall_clock"]
