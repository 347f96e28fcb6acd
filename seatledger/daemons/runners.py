"""Running the daemons: the master (`seatledger master`) and a slave (`seatledger slave`).

This is the one place that decides what runs beside what: the master's nursery holds the
server, the signal handler, the read-model runner (when available) and the daily export.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import trio

from ledger import LedgerApp, ManualClock
from seatledger.bootstrap import open_ledger
from seatledger.config.bundle import Bundle, parse_address
from seatledger.config.settings import Config
from seatledger.master.server import Master, MasterSettings
from seatledger.services.sites import master_context
from seatledger.slave.connector import SlaveConnector, SlaveSettings
from seatledger.slave.local_socket import serve_socket

log = logging.getLogger("seatledger")


def wall_clock() -> datetime:
    return datetime.now(UTC)


async def run_master(config: Config, listen: str, *,
                     ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; then finish in-flight requests and close cleanly."""
    host, port = parse_address(listen)
    clock = ManualClock(wall_clock())
    app = open_ledger(config, clock=clock)
    try:
        app.licence  # noqa: B018 - a master needs a licence: fail now with a clear error
        master = Master(app, clock, master_context(config, app),
                        settings=MasterSettings(heartbeat_interval=config.heartbeat_seconds,
                                                missed_heartbeats=config.missed_heartbeats),
                        now=wall_clock)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow_projections, config)
            await nursery.start(_stop_on_signal, master)
            listeners = await nursery.start(master.run, host, port)
            nursery.start_soon(daily_exports, master, config)
            bound = listeners[0].socket.getsockname()
            if ready is not None:
                ready(f"{bound[0]}:{bound[1]}")
            await master.stopped.wait()
            nursery.cancel_scope.cancel()  # the export schedule and the signal watcher
    finally:
        await trio.to_thread.run_sync(app.close)


async def follow_projections(config: Config) -> None:
    """Keep the read models current in a child process (`seatledger projections follow`).

    A process of its own, not a thread: the views' work then runs on the other core instead
    of competing with the master's event loop and commits for one interpreter lock. It polls
    the store a few times a second (SQLite has no change notifications). If it fails, the
    master carries on serving and restarts it after a pause.
    """
    import os
    import signal

    command = [sys.executable, "-m", "seatledger.cli", "projections", "follow",
               "--data-dir", str(config.root), "--parent-pid", str(os.getpid())]
    while True:
        process = await trio.lowlevel.open_process(command)
        try:
            code = await process.wait()
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
        log.error("read-model follower exited with %s; restarting in 5 s", code)
        await trio.sleep(5)


async def _stop_on_signal(master: Master, *,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    import signal

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            log.info("signal %s: stopping", signum)
            master.stop()
            return


async def daily_exports(master: Master, config: Config) -> None:
    """Run the audit export at the configured UTC time, catching up missed days."""
    try:
        from seatledger.cli.export import (
            export_due_days,
            load_export_settings,
            next_export_at,
            run_exports,
        )

        load_export_settings(config)
    except Exception as e:  # no [export] configured: nothing to schedule
        log.info("daily export not scheduled: %s", e)
        return
    while True:
        at = next_export_at(config, master.now())
        await trio.sleep(max(0.0, (at - master.now()).total_seconds()))
        app: LedgerApp = master.app
        try:
            # The export reads the store and records AuditTrailExported; it runs while
            # the writer is paused so the ledger has one writer at a time.
            async with master.exclusive():
                master.ledger_clock.set(max(master.now(), master.ledger_clock.now()))
                days = export_due_days(app, config, master.now().date())
                await trio.to_thread.run_sync(run_exports, app, config, days)
        except Exception as e:  # an export failure must not stop licensing
            log.error("daily export failed (retried at the next run): %s", e)


async def run_slave(bundle: Bundle, state_dir: Path, *, socket_path: Path | None = None,
                    settings: SlaveSettings | None = None,
                    ready: Callable[[str], None] | None = None) -> None:
    """Run a slave connector with its local socket until SIGINT/SIGTERM."""
    import signal

    path = socket_path or state_dir / "slave.sock"
    async with SlaveConnector(bundle, state_dir, settings=settings or SlaveSettings()) as slave:
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


__all__ = ["run_master", "run_slave"]
