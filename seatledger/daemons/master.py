"""``seatledger master``: the master daemon's process.

Its nursery holds the server, the signal watcher, the read-model follower (a supervised
child process) and the daily export schedule.

On a PostgreSQL store several masters may share the ledger (a hot standby): each starts as a
standby (listening, answering ``standby``; its admin socket refusing operations) and watches
the lease (:mod:`seatledger.master.lease`). The one that takes it loads the ledger, serves,
runs the follower and the daily export, and renews the lease; every commit is fenced by its
term. A master that loses the lease (a fenced commit, or a renewal that failed until the
lease ran out) stops at once, committing nothing more, and is a standby again.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
from collections.abc import Callable
from datetime import datetime
from typing import Any

import trio

from exporters import ExportError
from ledger import LedgerError, ManualClock, StoreError
from ledger.persistence.fencing import FencedError
from projections.feed import FeedSender
from seatledger.alerts import Dispatcher, child_alert, export_failed_alert, observed_alert
from seatledger.bootstrap import (
    ExportSchedule,
    build_alerts,
    build_master,
    export_schedule,
    follower_command,
    open_fenced_ledger,
    standby_context,
    wall_clock,
)
from seatledger.config.bundle import parse_address
from seatledger.config.keys import write_replacing
from seatledger.config.lock import DataDirBusyError, DataDirLock
from seatledger.config.settings import Config, ConfigError
from seatledger.daemons.heap import settle_heap
from seatledger.daemons.ledger_writer import EXPORT
from seatledger.daemons.supervisor import ChildStatus, Supervisor
from seatledger.master.admin import AdminRoles, describe_process, serve_admin
from seatledger.master.lease import (
    HaSettings,
    Lease,
    LeaseError,
    SteppedDownError,
    ha_settings,
    is_postgres,
)
from seatledger.master.server import Master, Observed, Standby
from seatledger.master.writer import OperatorCall, OperatorFailed, StoreUnavailable
from seatledger.web.listeners import master_listeners

log = logging.getLogger("seatledger")

CHILDREN_STATE = "run/children.json"


async def run_master(config: Config, listen: str, *,
                     ready: Callable[[str], None] | None = None,
                     standby: Callable[[str], None] | None = None,
                     force_standby: bool = False) -> None:
    """Serve until SIGINT/SIGTERM; then finish in-flight requests and close cleanly.

    ``ready(address)`` is called each time this master starts serving sites; on a PostgreSQL
    store, ``standby(address)`` each time it is a standby. ``force_standby`` keeps it a
    standby (maintenance).

    Raises:
        ConfigError: ``force_standby`` on a store that is not PostgreSQL, or bad ``[ha]``.
    """
    host, port = parse_address(listen)
    schedule = export_schedule(config)
    master_listeners(config)  # a wrong [web] or [metrics] fails before anything starts
    alerts = build_alerts(config)
    if is_postgres(config.store_url):
        settings = ha_settings(config)
        lock = await _lock_data_dir(config)
        try:
            daemon = HaMaster(config, host, port, settings, schedule, ready=ready,
                              standby=standby, force_standby=force_standby, alerts=alerts)
            await daemon.run()
        finally:
            lock.release()
        return
    if force_standby:
        raise ConfigError("--standby needs a PostgreSQL store shared with another master "
                          "([store] url = \"postgresql://...\")")
    lock = await _lock_data_dir(config)
    try:
        master = build_master(config)
    except BaseException:
        lock.release()
        raise
    try:
        follower = read_model_follower(config, master, alerts)
        alert_on(master, alerts)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(alerts.run)
            nursery.start_soon(follower.run)
            await nursery.start(_stop_on_signal, master)
            listeners = await nursery.start(master.run, host, port)
            await nursery.start(serve_admin, config.layout.admin_socket, master.submit,
                                describe_process)
            await nursery.start(_serve_web, config, master)
            if schedule is not None:
                nursery.start_soon(functools.partial(daily_exports, master, schedule,
                                                     alerts=alerts))
            bound = listeners[0].socket.getsockname()
            settle_heap()
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


def alert_on(master: Master, alerts: Dispatcher) -> None:
    """Send what ``master`` observes (notices, sites cut off and back) to ``alerts``."""
    if not alerts.active:  # no channel: the master need not observe anything
        return

    def observe(what: Observed) -> None:
        alert = observed_alert(what, master.now())
        if alert is not None:
            alerts.submit(alert)

    master.observers.append(observe)


def read_model_follower(config: Config, master: Master, alerts: Dispatcher) -> Supervisor:
    """The read-model follower, supervised, fed each commit by ``master``'s writer (over a
    new socket pair each time it starts: :mod:`projections.feed`)."""
    feed = FeedSender(contiguous=master.app.contiguous_ids)
    master.writer.attach_feed(feed.send)

    def prepare() -> tuple[list[str], list[int]]:
        fd = feed.connect()
        return ["--feed-fd", str(fd)], [fd]

    return Supervisor("read-model follower", follower_command(config, os.getpid()),
                      on_change=child_changed(config, alerts, master.now), prepare=prepare)


def child_changed(config: Config, alerts: Dispatcher,
                  now: Callable[[], datetime]) -> Callable[[ChildStatus], None]:
    """A supervised child's new state: recorded for ``status``, and alerted on failure."""
    def changed(status: ChildStatus) -> None:
        write_children(config, status)
        alert = child_alert(status.name, str(status.state), status.last_exit, status.restarts,
                            now())
        if alert is not None:
            alerts.submit(alert)

    return changed


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


async def daily_exports(master: Master, schedule: ExportSchedule, *,
                        alerts: Dispatcher | None = None) -> None:
    """Run the audit export at the configured UTC time, catching up missed days. A failed
    run is logged (and alerted) and retried at the next run: licensing goes on meanwhile."""
    while True:
        at = schedule.next_run(master.now())
        await trio.sleep(max(0.0, (at - master.now()).total_seconds()))
        try:
            if master.writer.process is not None:  # the writer process runs it, in turn
                outcome = await master.submit(OperatorCall(
                    EXPORT, _in_writer_process, {"today": master.now().date().isoformat()}))
                if isinstance(outcome, OperatorFailed):
                    raise outcome.error
                if isinstance(outcome, StoreUnavailable):
                    raise StoreError(outcome.error)
                if outcome["error"]:
                    raise ExportError(outcome["error"])
                continue
            # The export reads the store and records AuditTrailExported; it runs while
            # the writer is paused so the ledger has one writer at a time.
            async with master.exclusive():
                master.ledger_clock.set(master.now())
                days = schedule.due(master.app, master.now().date())
                if master.settings.worker_thread:
                    await trio.to_thread.run_sync(schedule.run, master.app, days)
                else:  # on trio's MockClock a thread looks idle: the clock would jump
                    schedule.run(master.app, days)
        except FencedError as e:  # another master is active: it runs the exports now
            master.step_down(e)
            return
        except (ConfigError, ExportError, LedgerError, OSError) as e:
            log.error("daily export failed (retried at the next run): %s", e)
            if alerts is not None:
                alerts.submit(export_failed_alert(str(e), master.now()))


async def _serve_web(config: Config, master: Master, *,
                     task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """The dashboard and metrics, if ``[web]`` or ``[metrics]`` asks for them: only then are
    the web servers loaded (a master without them runs in less memory)."""
    web, metrics = master_listeners(config)
    if web is None and metrics is None:
        task_status.started()
        return
    from seatledger.web.daemon import serve_master_web

    await serve_master_web(config, master, web, metrics, task_status=task_status)


def _in_writer_process(app: object) -> object:
    raise LedgerError("the daily export runs in the ledger writer process")


class HaMaster:
    """A master on a PostgreSQL ledger shared with other masters: standby until it holds the
    lease, then active until it stops or loses the lease (see the module docstring)."""

    def __init__(self, config: Config, host: str, port: int, settings: HaSettings,
                 schedule: ExportSchedule | None, *,
                 ready: Callable[[str], None] | None = None,
                 standby: Callable[[str], None] | None = None, force_standby: bool = False,
                 alerts: Dispatcher | None = None):
        self.config = config
        self.alerts = alerts or Dispatcher(())
        self.host = host
        self.port = port
        self.settings = settings
        self.schedule = schedule
        self.ready = ready
        self.on_standby = standby
        self.force_standby = force_standby
        self.lease = Lease(config.store_url, settings.holder(f"{host}:{port}", os.getpid()),
                           lease_seconds=settings.lease_seconds)
        self.roles = AdminRoles(self.describe_active)
        self.master: Master | None = None
        self.stopping = trio.Event()
        self._waiting: trio.CancelScope | None = None
        self._active_name = "unknown"
        self._left_active = trio.Event()
        self._lost_because = ""

    async def describe_active(self) -> str:
        """The active master, as the lease names it, for a standby's refusals."""
        try:
            state = await trio.to_thread.run_sync(self.lease.read)
        except LeaseError as e:
            return f"unknown ({e})"
        return state.describe() if state is not None else "none yet"

    def stop(self) -> None:
        self.stopping.set()
        if self.master is not None:
            self.master.stop()
        if self._waiting is not None:
            self._waiting.cancel()

    async def run(self) -> None:
        await trio.to_thread.run_sync(self.lease.prepare)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(_watch_signals, self.stop)
                await nursery.start(self.roles.serve, self.config.layout.admin_socket)
                nursery.start_soon(self.alerts.run)
                while not self.stopping.is_set():
                    listeners = await trio.open_tcp_listeners(self.port, host=self.host)
                    if not await self._standby(listeners):
                        for listener in listeners:
                            await trio.aclose_forcefully(listener)
                        break
                    await self._active(listeners)
                nursery.cancel_scope.cancel()
        finally:
            self.lease.close()

    async def _standby(self, listeners: list[trio.SocketListener]) -> bool:
        """Answer ``standby`` on ``listeners`` until this master holds the lease (True) or
        is stopped (False)."""
        self.roles.become_standby()
        server = Standby(standby_context(self.config), lambda: self._active_name)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve, listeners)
            if self.on_standby is not None:
                self.on_standby(_bound(listeners))
            with trio.CancelScope() as self._waiting:
                if self.stopping.is_set():
                    self._waiting.cancel()
                await self._wait_for_lease()
            self._waiting = None
            nursery.cancel_scope.cancel()
        return not self.stopping.is_set()

    async def _wait_for_lease(self) -> None:
        warned = False
        while True:
            try:
                if not self.force_standby:
                    state = await trio.to_thread.run_sync(self.lease.try_acquire)
                    if state is not None:
                        log.warning("took the lease: active master, term %s", state.term)
                        return
                current = await trio.to_thread.run_sync(self.lease.read)
                self._active_name = current.describe() if current else "none yet"
                warned = False
            except LeaseError as e:
                if not warned:
                    log.error("standby cannot see the lease (retrying): %s", e)
                    warned = True
            await trio.sleep(self.settings.poll_seconds)

    async def _active(self, listeners: list[trio.SocketListener]) -> None:
        """Load the ledger and serve until stopped (then release the lease) or until the
        lease is lost (then stop at once, committing nothing more). The lease is renewed
        from the moment it was taken: loading a long ledger must not let it expire."""
        self._left_active = trio.Event()
        self._lost_because = ""
        master: Master | None = None
        app = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._keep_lease)
                app = await trio.to_thread.run_sync(
                    lambda: open_fenced_ledger(self.config, self.lease.fence,
                                               ManualClock(wall_clock())))
                # The fenced ledger commits here: its fence (the lease's term) is this
                # process's; a writer process would commit unfenced.
                master = self.master = build_master(self.config, app=app, writer_process=False)
                if self._lost_because:  # lost while loading: never serve
                    master.step_down(self._lost_because)
                else:
                    await self._serve(nursery, master, listeners)
                nursery.cancel_scope.cancel()
        finally:
            self.master = None
            self._left_active.set()
            self.roles.become_standby()
            for listener in listeners:  # closed by the master once it ran; else here
                await trio.aclose_forcefully(listener)
            if master is None or master.stepping_down.is_set():
                # Ending our session lets a standby take over at once (a failed load
                # propagates from here; a lost lease makes this master a standby again).
                self.lease.step_down()
                if master is not None:
                    log.critical("lost the lease (%s): stepped down, committing nothing "
                                 "more; now a standby", master.step_down_reason)
                if app is not None:
                    try:
                        await trio.to_thread.run_sync(app.close)
                    except StoreError as e:  # the closing checkpoint is fenced off too
                        log.info("closing the ledger after stepping down: %s", e)
        assert app is not None and master is not None
        if master.stepping_down.is_set():
            return
        try:
            await trio.to_thread.run_sync(app.close)
        finally:
            try:
                await trio.to_thread.run_sync(self.lease.release)
            except LeaseError as e:
                log.error("could not release the lease (it expires by itself): %s", e)

    async def _serve(self, nursery: trio.Nursery, master: Master,
                     listeners: list[trio.SocketListener]) -> None:
        """Run ``master`` (and the follower and the daily export) until it stops or steps
        down."""
        follower = read_model_follower(self.config, master, self.alerts)
        alert_on(master, self.alerts)
        nursery.start_soon(follower.run)
        await nursery.start(functools.partial(master.run, self.host, self.port,
                                              listeners=listeners))
        self.roles.become_active(self._submit)
        await nursery.start(_serve_web, self.config, master)
        if self.schedule is not None:
            nursery.start_soon(functools.partial(daily_exports, master, self.schedule,
                                                 alerts=self.alerts))
        if self.stopping.is_set():
            master.stop()
        settle_heap()
        if self.ready is not None:
            self.ready(_bound(listeners))
        async with trio.open_nursery() as first:
            first.start_soon(_set_when, master.stopped, first.cancel_scope)
            first.start_soon(_set_when, master.stepping_down, first.cancel_scope)

    def _lost(self, why: str) -> None:
        self._lost_because = why
        if self.master is not None:
            self.master.step_down(why)

    async def _submit(self, command: Any) -> Any:
        """An operator's command, to the active master's writer; refused if this master
        steps down before it is committed (a fenced writer answers nothing more)."""
        master, left = self.master, self._left_active
        outcome: Any = OperatorFailed(SteppedDownError(
            "this master lost its lease before the command was committed: nothing was "
            "recorded; run it on the active master"))
        if master is None:
            return outcome
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_set_when, left, nursery.cancel_scope)
            outcome = await master.submit(command)
            nursery.cancel_scope.cancel()
        return outcome

    async def _keep_lease(self) -> None:
        """Renew the lease every ``renew_seconds``; step down when it is no longer ours, or
        when it could not be renewed for so long that it may have expired."""
        settings = self.settings
        renewed = trio.current_time()
        while True:
            await trio.sleep(settings.renew_seconds)
            try:
                with trio.move_on_after(settings.lease_seconds / 2):
                    ours = await trio.to_thread.run_sync(self.lease.renew,
                                                         abandon_on_cancel=True)
                    if not ours:
                        self._lost("another master took the lease, or it expired")
                        return
                    renewed = trio.current_time()
            except LeaseError as e:
                log.error("cannot renew the lease: %s", e)
            if trio.current_time() - renewed >= settings.lease_seconds - settings.renew_seconds:
                self._lost(f"the lease could not be renewed for "
                           f"{trio.current_time() - renewed:.1f}s")
                return


async def _set_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _watch_signals(stop: Callable[[], None], *,
                         task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            log.info("signal %s: stopping", signum)
            stop()


def _bound(listeners: list[trio.SocketListener]) -> str:
    bound = listeners[0].socket.getsockname()
    return f"{bound[0]}:{bound[1]}"


__all__ = ["HaMaster", "alert_on", "child_changed", "daily_exports", "read_children",
           "run_master", "write_children"]
