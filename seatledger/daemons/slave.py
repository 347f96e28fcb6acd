"""``seatledger slave``: a site's connector and its local socket, as a process."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path

import trio

from seatledger.bootstrap import build_slave
from seatledger.config.bundle import Bundle
from seatledger.config.lock import DataDirLock
from seatledger.slave.connector import SlaveSettings
from seatledger.slave.local_socket import serve_socket


async def run_slave(bundle: Bundle, state_dir: Path, *, socket_path: Path | None = None,
                    settings: SlaveSettings | None = None,
                    ready: Callable[[str], None] | None = None) -> None:
    """Run a slave connector with its local socket until SIGINT/SIGTERM."""
    path = socket_path or state_dir / "slave.sock"
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    state_dir.chmod(0o700)
    with DataDirLock(state_dir / "slave.lock", "slave"):
        await _serve(bundle, state_dir, path, settings, ready)


async def _serve(bundle: Bundle, state_dir: Path, path: Path, settings: SlaveSettings | None,
                 ready: Callable[[str], None] | None) -> None:
    async with build_slave(bundle, state_dir, settings=settings) as slave:
        slave.on_alert = lambda a: print(f"[{a.at:%Y-%m-%d %H:%M:%S}] {a.severity}: {a.text}",
                                         file=sys.stderr, flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(serve_socket, slave, path)
                if ready is not None:
                    ready(str(path))
                async for _ in signals:
                    break
                nursery.cancel_scope.cancel()


__all__ = ["run_slave"]
