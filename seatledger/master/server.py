"""The master daemon: one trio nursery serving every site over mutual TLS.

Tasks:
* the listener, handing each TLS connection to :meth:`Master._serve_site`;
* one task group per site connection: a receiver (bytes -> protocol core -> requests), a
  sender draining the connection's bounded outbox, and a heartbeat;
* the single ledger writer: it drains requests from all connections and commits them in
  batches through :meth:`ledger.LedgerApp.execute` in a worker thread (group commit), then
  answers each request - so a grant is acknowledged only after its batch is durable;
* a timer that submits a Tick when the licence's next deadline (grace, notices, cut-off,
  expiry) falls due, even when no request arrives.

Backpressure: the request queue is bounded, so a flood blocks the connections that cause it
(their sockets stop being read); each connection's outbox is bounded too, and a site that
does not read its answers is disconnected rather than allowed to hold up the writer.
"""

from __future__ import annotations

import itertools
import logging
import math
import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import trio

from ledger import (
    AcquireSeat,
    ConnectSite,
    DisconnectSite,
    Failure,
    Grant,
    HeldSeat,
    LedgerApp,
    ManualClock,
    Notice,
    OfflineEvent,
    ReleaseSeat,
    Severity,
    SyncResult,
    SyncSite,
    Tick,
)
from ledger.domain.licence import REVOKED
from seatledger.master.translate import (
    answer_acquire,
    answer_release,
    held_seat,
    notice_message,
    offline_event,
)
from seatledger.master.writer import Request, Writer
from transport import (
    CLOSED,
    NEED_DATA,
    Acquire,
    Connection,
    Error,
    Goodbye,
    Heartbeat,
    Hello,
    ProtocolError,
    Release,
    RemoteProtocolError,
    Role,
    State,
    Sync,
    SyncDone,
    Welcome,
)
from transport.tls import peer_identity

log = logging.getLogger("seatledger.master")


_QUIET_STATES = (State.AWAIT_HELLO, State.SEND_WELCOME)


@attrs.frozen
class MasterSettings:
    heartbeat_interval: float = 10.0
    missed_heartbeats: int = 3
    max_batch: int = 2000
    queue_size: int = 20000
    outbox_size: int = 4096
    handshake_timeout: float = 10.0
    # How often, at least, the ledger is re-read for an operator's changes (a site enrolled
    # or revoked from the command line while the master runs). Cheap when nothing changed.
    refresh_interval: float = 1.0
    # Commit in a worker thread so the event loop keeps serving during the commit. Tests on
    # trio's MockClock turn it off: a thread looks idle to the clock, which would jump ahead.
    worker_thread: bool = True


class _Session:
    """One connected site, as the master's tasks share it."""

    def __init__(self, site: str, number: int, outbox_size: int):
        self.site = site
        self.id = f"{site}-{number}"
        self.outbox_tx, self.outbox_rx = trio.open_memory_channel[Any](outbox_size)
        self.cancel_scope = trio.CancelScope()
        self.overloaded = False

    def send(self, message: Any) -> None:
        """Queue a message without waiting; a site that does not keep up is dropped."""
        try:
            self.outbox_tx.send_nowait(message)
        except trio.WouldBlock:
            self.overloaded = True
            self.cancel_scope.cancel()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass


class Master:
    """The master daemon's state and tasks. Run :meth:`run` in a nursery or trio.run."""

    def __init__(
        self,
        app: LedgerApp,
        ledger_clock: ManualClock,
        server_context: ssl.SSLContext,
        *,
        settings: MasterSettings = MasterSettings(),
        now: Callable[[], datetime] | None = None,
        on_commit: Callable[[], None] | None = None,
    ):
        self.app = app
        self.ledger_clock = ledger_clock
        self.context = server_context
        self.settings = settings
        self._now = now
        self.on_commit = on_commit
        # Recorded time follows trio's clock (monotonic; MockClock in tests) from the last
        # recorded time: a wall-clock step is recorded, never followed.
        app.timekeeper.follow_monotonic(trio.lowlevel.current_clock().current_time)
        self.writer = Writer(app, ledger_clock, self.now, max_batch=settings.max_batch,
                             queue_size=settings.queue_size, worker_thread=settings.worker_thread,
                             after_batch=self._after_batch)
        self._sessions: dict[str, _Session] = {}
        self._numbers = itertools.count(1)
        self._schedule_changed = trio.Event()
        self._next_due: datetime | None = app.licence.next_due()
        self._stopping = trio.Event()
        self.stopped = trio.Event()
        self.listening: list[trio.SocketListener] = []

    # ------------------------------------------------------------------ time
    def now(self) -> datetime:
        if self._now is not None:
            return self._now()
        return datetime.now(UTC)

    def statistics(self) -> dict[str, Any]:
        return {"sessions": len(self._sessions), **self.writer.statistics()}

    @property
    def batches(self) -> int:
        return self.writer.batches

    @property
    def committed(self) -> int:
        return self.writer.committed

    @property
    def largest_batch(self) -> int:
        return self.writer.largest_batch

    # ------------------------------------------------------------------ running
    async def run(self, host: str, port: int, *,
                  task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Serve until cancelled or :meth:`stop` is called; then close cleanly."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.listening = listeners
        try:
            await self._run(listeners, task_status)
        finally:
            for listener in listeners:
                await trio.aclose_forcefully(listener)
            self.stopped.set()

    async def _run(self, listeners: list[trio.SocketListener], task_status: Any) -> None:
        async with trio.open_nursery() as core:
            core.start_soon(self.writer.run)
            core.start_soon(self._timer)
            # Sites the ledger still shows connected lost us when we stopped: their
            # cut-off clocks start now.
            for name, site in list(self.app.licence.sites.items()):
                if site.status == "connected":
                    await self.submit(DisconnectSite(name, "master restarted"))
            async with trio.open_nursery() as sites:
                sites.start_soon(self._accept, listeners, sites)
                task_status.started(listeners)
                await self._stopping.wait()
                # Stop accepting; say goodbye to every site; their handlers finish.
                for listener in listeners:
                    await listener.aclose()
                for session in list(self._sessions.values()):
                    session.send(Goodbye("master shutting down"))
                with trio.move_on_after(2):
                    while self._sessions:
                        await trio.sleep(0.01)
                sites.cancel_scope.cancel()
            # Every request already queued is committed before the writer stops.
            while self.writer.queued:
                await trio.sleep(0.01)
            await self.writer.flush()
            core.cancel_scope.cancel()

    def exclusive(self) -> trio.Lock:
        """Hold this (``async with``) to use the ledger while the writer waits."""
        return self.writer.exclusive()

    def stop(self) -> None:
        self._stopping.set()

    async def _accept(self, listeners: list[trio.SocketListener],
                      nursery: trio.Nursery) -> None:
        async def accept_loop(listener: trio.SocketListener) -> None:
            while True:
                try:
                    stream = await listener.accept()
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    return
                except OSError as e:  # e.g. EMFILE: back off rather than spin
                    log.warning("accept failed: %s", e)
                    await trio.sleep(0.1)
                    continue
                nursery.start_soon(self._serve_site, stream)

        async with trio.open_nursery() as n:
            for listener in listeners:
                n.start_soon(accept_loop, listener)

    # ------------------------------------------------------------------ after each batch
    def _after_batch(self, outcomes: list[Any]) -> None:
        self._broadcast_notices(outcomes)
        self._drop_revoked()
        due = self.app.licence.next_due()
        if due != self._next_due:
            self._next_due = due
            self._schedule_changed.set()
        if self.on_commit is not None:
            self.on_commit()

    def _drop_revoked(self) -> None:
        sites = self.app.licence.sites
        for session in list(self._sessions.values()):
            site = sites.get(session.site)
            if site is None or site.status == REVOKED:
                session.send(Error("revoked", f"site {session.site!r} has been revoked"))
                session.cancel_scope.deadline = trio.current_time() + 1

    def _broadcast_notices(self, outcomes: list[Any]) -> None:
        notices: list[Notice] = []
        for outcome in outcomes:
            if isinstance(outcome, list):
                notices += [n for n in outcome if isinstance(n, Notice)]
            elif isinstance(outcome, Grant) and outcome.opened:
                for pool in outcome.opened:
                    p = self.app.licence.pools[pool]
                    notices.append(Notice(pool, Severity.OPENED, p.deadline,
                                          f"{pool} over-use: {p.in_use} in use, limit {p.limit};"
                                          f" grace until {p.deadline:%Y-%m-%d %H:%M}Z"))
        for notice in notices:
            message = notice_message(notice)
            for session in list(self._sessions.values()):
                session.send(message)

    async def submit(self, command: Any) -> Any:
        """Submit one command and wait until its batch has been committed."""
        return await self.writer.submit(command)

    # ------------------------------------------------------------------ the timer
    async def _timer(self) -> None:
        """Tick when the next deadline falls due, and at least every refresh interval
        (so that changes an operator made from the command line are picked up)."""
        refresh = self.settings.refresh_interval
        while True:
            self._schedule_changed = trio.Event()
            due = self._next_due
            delay = refresh if due is None else (due - self.app.now()).total_seconds()
            if delay > 0:
                with trio.move_on_after(min(delay, refresh)) as idle:
                    await self._schedule_changed.wait()
                if not idle.cancelled_caught:
                    continue  # the schedule moved: recompute
            await self.submit(Tick())
            if due is not None and self._next_due == due and delay <= 0:
                await trio.sleep(1)  # nothing moved it: do not spin on the same instant

    # ------------------------------------------------------------------ one site
    async def _serve_site(self, tcp: trio.SocketStream) -> None:
        stream = trio.SSLStream(tcp, self.context, server_side=True)
        try:
            with trio.fail_after(self.settings.handshake_timeout):
                await stream.do_handshake()
            identity = peer_identity(stream)
        except (trio.BrokenResourceError, trio.TooSlowError, ProtocolError, ssl.SSLError,
                OSError) as e:
            log.info("handshake refused: %s", e)
            await trio.aclose_forcefully(stream)
            return
        site = self.app.licence.sites.get(identity.name)
        if site is None or site.status == REVOKED or (
                site.fingerprint and site.fingerprint != identity.fingerprint):
            await self._refuse(stream, "unknown_site", f"site {identity.name!r} is not enrolled "
                                                       "with this certificate")
            return
        previous = self._sessions.get(identity.name)
        if previous is not None:  # a site reconnecting replaces its stale session
            previous.cancel_scope.cancel()
        session = _Session(identity.name, next(self._numbers), self.settings.outbox_size)
        self._sessions[identity.name] = session
        conn = Connection(Role.SERVER, peer_site=identity.name)
        clean = False
        try:
            with session.cancel_scope:
                async with trio.open_nursery() as n:
                    n.start_soon(self._send_loop, stream, conn, session)
                    clean = await self._receive_loop(stream, conn, session)
                    n.cancel_scope.cancel()
        finally:
            await trio.aclose_forcefully(stream)
            if self._sessions.get(identity.name) is session:
                del self._sessions[identity.name]
                reason = ("goodbye" if clean else
                          "overloaded" if session.overloaded else "connection lost")
                # An outer cancellation means the daemon itself is stopping: the next start
                # records every site as disconnected, so nothing is lost by not waiting here.
                if self.writer.alive and trio.current_effective_deadline() != -math.inf:
                    await self.submit(DisconnectSite(identity.name, reason))

    async def _refuse(self, stream: trio.SSLStream[Any], code: str, text: str) -> None:
        conn = Connection(Role.SERVER)
        with trio.move_on_after(2):
            try:
                await stream.send_all(conn.send(Error(code, text)))
            except (trio.BrokenResourceError, trio.ClosedResourceError, ProtocolError):
                pass
        await trio.aclose_forcefully(stream)

    async def _send_loop(self, stream: trio.SSLStream[Any], conn: Connection,
                         session: _Session) -> None:
        interval = self.settings.heartbeat_interval
        while True:
            with trio.move_on_after(interval) as idle:
                message = await session.outbox_rx.receive()
            if idle.cancelled_caught:
                if conn.our_state in _QUIET_STATES:  # no heartbeats before Welcome
                    continue
                message = Heartbeat()
            chunks = [conn.send(message)]
            while len(chunks) < 256:  # coalesce what is ready into one TLS write
                try:
                    chunks.append(conn.send(session.outbox_rx.receive_nowait()))
                except trio.WouldBlock:
                    break
            try:
                await stream.send_all(b"".join(chunks))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                session.cancel_scope.cancel()  # the site is gone: end its session only
                return
            if isinstance(message, (Goodbye, Error)):
                return

    async def _receive_loop(self, stream: trio.SSLStream[Any], conn: Connection,
                            session: _Session) -> bool:
        """Read and dispatch until the site leaves. Returns True for a clean goodbye."""
        silence = self.settings.heartbeat_interval * self.settings.missed_heartbeats
        sync_events: list[OfflineEvent] = []
        sync_held: list[HeldSeat] = []
        site = session.site
        while True:
            try:
                event = conn.next_event()
            except RemoteProtocolError as e:
                session.send(Error("protocol_error", str(e)[:400]))
                await trio.sleep(0.05)  # let the sender flush the Error
                return False
            if event is NEED_DATA:
                with trio.move_on_after(silence) as quiet:
                    try:
                        data = await stream.receive_some(65536)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return False
                if quiet.cancelled_caught:
                    log.info("%s silent for %.0fs: dropped", site, silence)
                    return False
                conn.receive_data(data)
                continue
            if event is CLOSED:
                return False
            match event:
                case Hello():
                    outcome = await self.submit(ConnectSite(site))
                    if isinstance(outcome, Failure):
                        session.send(Error("refused", outcome.error))
                        return False
                    limits = self.app.licence.sites[site].local_limits
                    session.send(Welcome(session.id, self.settings.heartbeat_interval,
                                         dict(limits)))
                case Sync(events, held, more):
                    sync_events += [offline_event(e) for e in events]
                    sync_held += [held_seat(h) for h in held]
                    if not more:
                        result = await self.submit(SyncSite(site, tuple(sync_events),
                                                            tuple(sync_held)))
                        sync_events, sync_held = [], []
                        if isinstance(result, SyncResult):
                            session.send(SyncDone(result.applied, result.skipped,
                                                  result.reconciled))
                        else:
                            session.send(Error("sync_failed", getattr(result, "error", "")))
                            return False
                case Acquire(request_id, user, agent_class, tenant, campaign):
                    await self.writer.enqueue(Request(
                        AcquireSeat(site, user, agent_class, tenant, campaign),
                        answer_acquire(session.send, request_id)))
                case Release(request_id, user):
                    await self.writer.enqueue(Request(
                        ReleaseSeat(site, user), answer_release(session.send, request_id, user)))
                case Heartbeat():
                    pass
                case Goodbye():
                    return True
                case Error():
                    return False


def trio_now(start: datetime) -> Callable[[], datetime]:
    """Ledger time driven by trio's clock (so MockClock drives the ledger in tests)."""
    origin = trio.current_time()

    def now() -> datetime:
        return start + timedelta(seconds=trio.current_time() - origin)

    return now


__all__ = ["Master", "MasterSettings", "trio_now"]
