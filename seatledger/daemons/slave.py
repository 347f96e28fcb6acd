"""``seatledger slave``: a site's connector and its local socket, as a process."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import trio

from seatledger.bootstrap import build_slave
from seatledger.config.bundle import Bundle
from seatledger.config.lock import DataDirLock
from seatledger.config.settings import HttpListener
from seatledger.slave.connector import SlaveSettings
from seatledger.slave.local_socket import serve_socket
from seatledger.slave.policy import Alert
from seatledger.web.listeners import slave_metrics_listener

log = logging.getLogger("seatledger.slave")


async def run_slave(bundle: Bundle, state_dir: Path, *, socket_path: Path | None = None,
                    settings: SlaveSettings | None = None,
                    ready: Callable[[str], None] | None = None,
                    log_alerts: bool = False, metrics_listen: str | None = None) -> None:
    """Run a slave connector with its local socket until SIGINT/SIGTERM. The site's alerts
    are printed on stderr, or logged (``log_alerts``: structured logs carry the site).
    Its metrics are served at ``metrics_listen``, else at ``[metrics] listen`` of
    ``slave.toml`` in the state directory, if either is given."""
    path = socket_path or state_dir / "slave.sock"
    metrics = slave_metrics_listener(state_dir, metrics_listen)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    state_dir.chmod(0o700)
    with DataDirLock(state_dir / "slave.lock", "slave"):
        await _serve(bundle, state_dir, path, settings, ready, log_alerts, metrics)


def _print_alert(alert: Alert) -> None:
    print(f"[{alert.at:%Y-%m-%d %H:%M:%S}] {alert.severity}: {alert.text}", file=sys.stderr,
          flush=True)


async def _serve(bundle: Bundle, state_dir: Path, path: Path, settings: SlaveSettings | None,
                 ready: Callable[[str], None] | None, log_alerts: bool,
                 metrics: HttpListener | None = None) -> None:
    async with build_slave(bundle, state_dir, settings=settings) as slave:
        slave.on_alert = _print_alert
        if log_alerts:
            slave.on_alert = lambda a: log.warning(a.text, extra={
                "site": bundle.site, "severity": str(a.severity)})
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(serve_socket, slave, path)
                if metrics is not None:  # (only then are the web servers loaded)
                    from seatledger.web.daemon import serve_slave_metrics

                    await nursery.start(serve_slave_metrics, slave, metrics)
                if ready is not None:
                    ready(str(path))
                async for _ in signals:
                    break
                nursery.cancel_scope.cancel()


__all__ = ["run_slave"]
