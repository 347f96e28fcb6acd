"""``seatledger master``: the master daemon's process.

Its nursery holds the server, the signal watcher, the read-model follower (a supervised
child process) and the daily export schedule.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Callable

import trio

from exporters import ExportError
from ledger import LedgerError
from seatledger.bootstrap import ExportSchedule, build_master, export_schedule, follower_command
from seatledger.config.bundle import parse_address
from seatledger.config.keys import write_replacing
from seatledger.config.lock import DataDirBusyError, DataDirLock
from seatledger.config.settings import Config, ConfigError
from seatledger.daemons.supervisor import ChildStatus, Supervisor
from seatledger.master.admin import describe_process, serve_admin
from seatledger.master.server import Master

log = logging.getLogger("seatledger")

CHILDREN_STATE = "run/children.json"


async def run_master(config: Config, listen: str, *,
                     ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; then finish in-flight requests and close cleanly."""
    host, port = parse_address(listen)
    schedule = export_schedule(config)
    lock = await _lock_data_dir(config)
    try:
        master = build_master(config)
    except BaseException:
        lock.release()
        raise
    try:
        follower = Supervisor("read-model follower", follower_command(config, os.getpid()),
                              on_change=lambda s: write_children(config, s))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follower.run)
            await nursery.start(_stop_on_signal, master)
            listeners = await nursery.start(master.run, host, port)
            await nursery.start(serve_admin, config.layout.admin_socket, master.submit,
                                describe_process)
            if schedule is not None:
                nursery.start_soon(daily_exports, master, schedule)
            bound = listeners[0].socket.getsockname()
            if ready is not None:
                ready(f"{bound[0]}:{bound[1]}")
            await master.stopped.wait()
            nursery.cancel_scope.cancel()  # the follower, the export schedule, the signals
    finally:
        try:
            await trio.to_thread.run_sync(master.app.close)
        finally:
            lock.release()


async def _lock_data_dir(config: Config) -> DataDirLock:
    """The data directory's lock, for this master's lifetime. An operator's command that
    holds it briefly is waited for; another master is not.

    Raises:
        DataDirBusyError: another master runs on this data directory.
    """
    lock = DataDirLock(config.layout.lock, "master", directory=config.root)
    for _ in range(100):
        try:
            lock.acquire()
            return lock
        except DataDirBusyError as e:
            if e.holder.startswith("master"):
                raise
            await trio.sleep(0.1)
    lock.acquire()
    return lock


def write_children(config: Config, status: ChildStatus) -> None:
    """Record a supervised child's state where ``seatledger status`` reads it. A full disk
    must not stop licensing: the state is then only logged."""
    path = config.root / CHILDREN_STATE
    try:
        write_replacing(path, json.dumps({status.name: status.as_dict()}).encode())
    except OSError as e:
        log.error("cannot record %s's state (%s): %s", status.name, status.state, e)


def read_children(config: Config) -> dict[str, dict[str, object]]:
    """What the running (or last) master reported about its children; {} if nothing."""
    try:
        data = json.loads((config.root / CHILDREN_STATE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


async def _stop_on_signal(master: Master, *,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            log.info("signal %s: stopping", signum)
            master.stop()
            return


async def daily_exports(master: Master, schedule: ExportSchedule) -> None:
    """Run the audit export at the configured UTC time, catching up missed days. A failed
    run is logged and retried at the next run: licensing goes on meanwhile."""
    while True:
        at = schedule.next_run(master.now())
        await trio.sleep(max(0.0, (at - master.now()).total_seconds()))
        try:
            # The export reads the store and records AuditTrailExported; it runs while
            # the writer is paused so the ledger has one writer at a time.
            async with master.exclusive():
                master.ledger_clock.set(master.now())
                days = schedule.due(master.app, master.now().date())
                if master.settings.worker_thread:
                    await trio.to_thread.run_sync(schedule.run, master.app, days)
                else:  # on trio's MockClock a thread looks idle: the clock would jump
                    schedule.run(master.app, days)
        except (ConfigError, ExportError, LedgerError, OSError) as e:
            log.error("daily export failed (retried at the next run): %s", e)


__all__ = ["daily_exports", "read_children", "run_master", "write_children"]
