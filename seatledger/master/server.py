"""The master daemon: one trio nursery serving every site over mutual TLS.

This module holds the listeners, the accept loop, the TLS handshake and the admission of a
site; the rest lives beside it:

* :mod:`seatledger.master.session`: one site's session over a :class:`transport.shell.Link`
  (heartbeats, bounded outbox) and the dispatch of its messages to ledger commands;
* :mod:`seatledger.master.writer`: the single ledger writer (group commit: a grant is
  acknowledged only after its batch is durable; operator calls from the admin socket);
* :mod:`seatledger.master.timer`: a Tick when the licence's next deadline falls due;
* :mod:`seatledger.master.handshakes`: the cap on connections not yet authenticated;
* :mod:`seatledger.master.lease`: which of several masters on one PostgreSQL ledger is
  active. A standby listens too (:class:`Standby`): it completes the TLS handshake and
  answers ``standby``, so that a site tries its other master at once.

The accept loop follows trio's ``serve_listeners``: only "system overloaded" errors from
``accept`` are retried (after a pause); any other error propagates and stops the master;
every accepted stream is closed, whatever its handler does.

Backpressure: the writer's request queue is bounded, so a flood blocks the connections that
cause it (their sockets stop being read); each session's outbox is bounded too, and a site
that does not read its answers is disconnected rather than allowed to hold up the writer.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import ssl
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import trio

from ledger import (
    DisconnectSite,
    Failure,
    Grant,
    LedgerApp,
    Licence,
    ManualClock,
    Notice,
    Refusal,
    Release,
    SyncResult,
)
from ledger.domain.licence import CONNECTED
from ledger.persistence.fencing import FencedError
from seatledger.master.admin import SeatsReleased
from seatledger.master.handshakes import PendingHandshakes, Place
from seatledger.master.ledger_process import LedgerProcess
from seatledger.master.session import CONNECTION_LOST, Sessions
from seatledger.master.settings import MasterSettings
from seatledger.master.timer import DeadlineTimer
from seatledger.master.translate import STORE_UNAVAILABLE, clock_notice, notice_message
from seatledger.master.upstream import Upstream, UpstreamConnector
from seatledger.master.writer import StoreUnavailable, Writer
from transport import CertificateError, Connection, Error, Role
from transport._messages import STANDBY
from transport.pki import SiteIdentity
from transport.tls import peer_identity
from transport.tls_stream import TLSStream

log = logging.getLogger("seatledger.master")

# Errors accept(2) returns when the system is overloaded (as trio's serve_listeners): they
# are retried after a pause; any other error is a real failure and propagates.
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_RETRY_DELAY = 0.1

DEFAULT_SETTINGS = MasterSettings()

_LINGER_RESET = struct.pack("ii", 1, 0)  # close with a reset: nothing lingers in the kernel


@attrs.frozen
class NoticeIssued:
    """Observed: a notice the master broadcast (over-use, grace, enforcement, expiry, export)."""

    notice: Notice


@attrs.frozen
class SiteStateChanged:
    """Observed: a site's recorded state changed in a batch (``previous`` None: new)."""

    site: str
    state: str
    previous: str | None


Observed = NoticeIssued | SiteStateChanged


class Master:
    """The master daemon's state and tasks. Run :meth:`run` in a nursery or trio.run."""

    def __init__(
        self,
        app: LedgerApp,
        ledger_clock: ManualClock,
        server_context: ssl.SSLContext,
        *,
        settings: MasterSettings = DEFAULT_SETTINGS,
        now: Callable[[], datetime] | None = None,
        on_commit: Callable[[], None] | None = None,
        upstream: UpstreamConnector | None = None,
        process: LedgerProcess | None = None,
    ):
        self.app = app
        self.ledger_clock = ledger_clock
        self.context = server_context
        # Set by the composition root: a new context when the CA's revocation list changed.
        self.refresh_context: Callable[[], ssl.SSLContext | None] | None = None
        self.settings = settings
        self._now = now
        self.on_commit = on_commit
        # Set by the daemon for its metrics: every batch's outcomes, after the batch.
        self.observe_outcomes: Callable[[list[Any]], None] | None = None
        # Observers (alerts, ...): told in the event loop, after each batch, of its notices
        # and of sites whose state changed. They must not block or wait.
        self.observers: list[Callable[[Observed], None]] = []
        self._site_states: dict[str, str] | None = None
        self._sites_seen_on: Licence | None = None  # (see _sites_may_have_changed)
        # Recorded time follows trio's clock (monotonic; MockClock in tests) from the last
        # recorded time: a wall-clock step is recorded, never followed.
        # The wall clock is read live, beside each monotonic reading, so that a step is told
        # from time merely passing between batches.
        app.timekeeper.follow_monotonic(trio.lowlevel.current_clock().current_time,
                                        wall=self.now)
        self.writer = Writer(app, ledger_clock, self.now, max_batch=settings.max_batch,
                             queue_size=settings.queue_size, worker_thread=settings.worker_thread,
                             after_batch=self._after_batch,
                             retry_interval=settings.store_retry_interval,
                             on_fenced=self.step_down, process=process)
        self.sessions = Sessions(app, self.writer, settings)
        self.upstream: Upstream | None = None
        """A chained master's link to its upstream master (``upstream``'s connector)."""
        if upstream is not None:
            self.upstream = Upstream(upstream, app, self.writer, self.sessions.broadcast)
            self.sessions.upstream = self.upstream
        self.timer = DeadlineTimer(app, self.submit, refresh_interval=settings.refresh_interval)
        self.handshakes = PendingHandshakes(
            total=settings.max_pending_handshakes,
            per_address=settings.max_pending_handshakes_per_address)
        self._store_was_available = True
        self._store_recovered = trio.Event()
        self._stopping = trio.Event()
        self.stopped = trio.Event()
        self.stepping_down = trio.Event()
        """Set when this master may no longer write (its lease is gone): the daemon then
        cancels it at once, committing nothing more."""
        self.step_down_reason = ""
        self.listening: list[trio.SocketListener] = []

    # ------------------------------------------------------------------ inspection
    def now(self) -> datetime:
        if self._now is not None:
            return self._now()
        return datetime.now(UTC)

    def statistics(self) -> dict[str, Any]:
        pending = self.handshakes.statistics()
        return {"sessions": len(self.sessions), **self.writer.statistics(),
                "pending_handshakes": pending.pending,
                "handshakes_refused": pending.refused,
                "handshakes_evicted": pending.evicted}

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
                  listeners: list[trio.SocketListener] | None = None,
                  task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Serve until cancelled or :meth:`stop` is called; then close cleanly. ``listeners``
        (a standby's, on taking over) are used instead of opening new ones, and closed too."""
        if listeners is None:
            listeners = await trio.open_tcp_listeners(port, host=host)
        self.listening = listeners
        try:
            await self._run(listeners, task_status)
        finally:
            for listener in listeners:
                await trio.aclose_forcefully(listener)
            self.stopped.set()

    async def _run(self, listeners: list[trio.SocketListener],
                   task_status: trio.TaskStatus[list[trio.SocketListener]]) -> None:
        process = self.writer.process
        if process is None:
            await self._serve(listeners, task_status)
            return
        await process.start()
        self.timer.reschedule()  # its copy of the licence has come from the writer
        try:
            await self._serve(listeners, task_status)
        finally:
            with trio.CancelScope(shield=True):
                await process.aclose()

    async def _serve(self, listeners: list[trio.SocketListener],
                     task_status: trio.TaskStatus[list[trio.SocketListener]]) -> None:
        async with trio.open_nursery() as core:
            core.start_soon(self.writer.run)
            core.start_soon(self.timer.run)
            core.start_soon(self.sessions.flusher.run)
            core.start_soon(self._after_store_outages)
            if self.upstream is not None:
                await core.start(self.upstream.run)
            # Sites the ledger still shows connected lost us when we stopped: their
            # cut-off clocks start now.
            for name, site in list(self.app.licence.sites.items()):
                if site.status == CONNECTED:
                    await self.submit(DisconnectSite(name, "master restarted"))
            async with trio.open_nursery() as handlers:
                accepting = await handlers.start(self._accept, listeners, handlers)
                task_status.started(listeners)
                await self._stopping.wait()
                # Stop accepting; say goodbye to every site; their sessions finish.
                accepting.cancel()
                self.sessions.say_goodbye("master shutting down")
                with trio.move_on_after(2):
                    await self.sessions.wait_empty()
                handlers.cancel_scope.cancel()
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

    def step_down(self, why: FencedError | str) -> None:
        """This master's lease is gone (a fenced commit, or a renewal that failed): it must
        not write again. The daemon cancels it (see :attr:`stepping_down`)."""
        if not self.stepping_down.is_set():
            self.step_down_reason = str(why)
            self.stepping_down.set()

    async def submit(self, command: Any) -> Any:
        """Submit one command and wait until its batch has been committed."""
        return await self.writer.submit(command)

    # ------------------------------------------------------------------ accepting
    async def _accept(self, listeners: list[trio.SocketListener], handlers: trio.Nursery, *,
                      task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED
                      ) -> None:
        """Accept on every listener until the returned scope is cancelled; then close them."""
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as loops:
                for listener in listeners:
                    loops.start_soon(serve_listener, listener, self.handshakes,
                                     self._serve_connection, handlers)
                task_status.started(scope)
        for listener in listeners:  # refuse new connections while the sessions finish
            await trio.aclose_forcefully(listener)

    async def _serve_connection(self, tcp: trio.SocketStream, place: Place) -> None:
        """One accepted connection: handshake, admission, the site's session. Always closes
        the stream."""
        try:
            if self.refresh_context is not None:
                self.context = self.refresh_context() or self.context
            tls = TLSStream(tcp, self.context, server_side=True)
            identity = await handshake(tls, place, self.handshakes,
                                       self.settings.handshake_timeout)
            if identity is None:
                return
            refusal = self._refusal(identity)
            if refusal is not None:
                await _refuse(tls, refusal)
                return
            await self.sessions.serve(tls, identity.name)
        finally:
            await trio.aclose_forcefully(tcp)

    def _refusal(self, identity: SiteIdentity) -> Error | None:
        """Why an authenticated peer may not open a session, or None if it may. (The
        handshake's own check refuses these already; this keeps the rule true for a context
        built without it.)"""
        if not self.app.has_licence:  # a failed commit could not read the store back
            return Error(STORE_UNAVAILABLE, "the ledger store cannot be read")
        if not self.app.licence.admits(identity.name, identity.fingerprint):
            return Error("unknown_site",
                         f"site {identity.name!r} is not enrolled with this certificate")
        return None

    # ------------------------------------------------------------------ after each batch
    def _after_batch(self, outcomes: list[Any]) -> None:
        self._broadcast_notices(outcomes)
        self._tell_reclaimed(outcomes)
        sites_changed = self.app.has_licence and self._sites_may_have_changed(outcomes)
        if sites_changed:
            self.sessions.drop_revoked()
        self.timer.reschedule()
        if self.upstream is not None:
            self.upstream.after_batch(outcomes)
        available = self.writer.available
        if available and not self._store_was_available:
            self._store_recovered.set()
        self._store_was_available = available
        if self.observe_outcomes is not None:
            self.observe_outcomes(outcomes)
        if self.observers and sites_changed:
            self._observe_sites()
        if self.on_commit is not None:
            self.on_commit()

    def _sites_may_have_changed(self, outcomes: list[Any]) -> bool:
        """Whether a site's state may differ from what the last call saw: seat commands
        (and what recorded nothing) change no site's state, so a batch of only those on the
        same licence object leaves every site as it was. Anything else may (an operator's
        revocation, a connection, a cut-off on a Tick), and so does a licence read anew
        from the store (a reload, which also catches another process's commits). Each
        session and each site is then looked at only when that may show something, not
        after every batch (200 sites, batches of one: 7 % of the event loop's time)."""
        licence = self.app.licence
        if licence is self._sites_seen_on and all(
                type(outcome) in _SITE_NEUTRAL_OUTCOMES for outcome in outcomes):
            return False
        self._sites_seen_on = licence
        return True

    def _tell_reclaimed(self, outcomes: list[Any]) -> None:
        """Tell a connected site the seats an operator released there (``site release``)."""
        for outcome in outcomes:
            if isinstance(outcome, SeatsReleased) and self.app.has_licence:
                self.sessions.reclaim(outcome.site, outcome.users)

    def _broadcast_notices(self, outcomes: list[Any]) -> None:
        notices: list[Notice] = []
        for outcome in outcomes:
            if isinstance(outcome, list):
                notices += [n for n in outcome if isinstance(n, Notice)]
            elif isinstance(outcome, Grant | SyncResult):
                notices += outcome.notices
        for notice in notices:
            self.sessions.broadcast(notice_message(notice))
            self._observe(NoticeIssued(notice))
        for wall, expected in self.app.take_clock_steps():
            log.critical("wall clock stepped: reads %s, expected %s", wall, expected)
            stepped = clock_notice(wall, expected)
            self.sessions.standing = [stepped]
            self.sessions.broadcast(stepped)

    def _observe(self, what: Observed) -> None:
        for observer in self.observers:
            observer(what)

    def _observe_sites(self) -> None:
        states = {name: str(site.status) for name, site in self.app.licence.sites.items()}
        if self._site_states is not None:  # the first batch sets the baseline
            for name, state in states.items():
                previous = self._site_states.get(name)
                if state != previous:
                    self._observe(SiteStateChanged(name, state, previous))
        self._site_states = states

    async def _after_store_outages(self) -> None:
        """After the store comes back, record the sites that left while it could not be
        written (their DisconnectSite was refused), so their cut-off clocks run."""
        while True:
            await self._store_recovered.wait()
            self._store_recovered = trio.Event()
            for name, site in list(self.app.licence.sites.items()):
                if site.status == CONNECTED and name not in self.sessions:
                    await self.submit(DisconnectSite(name, CONNECTION_LOST))


class Standby:
    """A standby master's listeners: every site that connects completes the TLS handshake
    and is told ``standby`` (with the active master's name), then the connection closes.
    Run :meth:`serve` in a nursery; cancel it to take over the same listeners."""

    def __init__(self, context: ssl.SSLContext, active: Callable[[], str], *,
                 settings: MasterSettings = DEFAULT_SETTINGS):
        self.context = context
        self.active = active
        self.settings = settings
        self.handshakes = PendingHandshakes(
            total=settings.max_pending_handshakes,
            per_address=settings.max_pending_handshakes_per_address)
        self.refused = 0

    async def serve(self, listeners: list[trio.SocketListener]) -> None:
        """Answer on ``listeners`` until cancelled (they stay open, for the active phase)."""
        async with trio.open_nursery() as handlers:
            for listener in listeners:
                handlers.start_soon(serve_listener, listener, self.handshakes, self._answer,
                                    handlers)

    async def _answer(self, tcp: trio.SocketStream, place: Place) -> None:
        try:
            tls = trio.SSLStream(tcp, self.context, server_side=True)
            identity = await handshake(tls, place, self.handshakes,
                                       self.settings.handshake_timeout)
            if identity is None:
                return
            self.refused += 1
            await _refuse(tls, Error(STANDBY, f"this master is a standby; the active master "
                                              f"is {self.active()}"[:4000]))
        finally:
            await trio.aclose_forcefully(tcp)


# ---------------------------------------------------------------------- shared by both roles
async def serve_listener(listener: trio.SocketListener, handshakes: PendingHandshakes,
                         handle: Callable[[trio.SocketStream, Place], Any],
                         handlers: trio.Nursery) -> None:
    """Accept on ``listener`` until cancelled, handing each stream (with its place among the
    pending handshakes) to ``handle`` in ``handlers``; ``handle`` must close it."""
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                raise
            log.error("accept returned %s (%s); retrying in %s seconds",
                      errno.errorcode[exc.errno], os.strerror(exc.errno), ACCEPT_RETRY_DELAY)
            await trio.sleep(ACCEPT_RETRY_DELAY)
            continue
        place = _place_for(stream, handshakes)
        if place is None:
            _close_at_once(stream)
            continue
        handlers.start_soon(handle, stream, place)


def _place_for(stream: trio.SocketStream, handshakes: PendingHandshakes) -> Place | None:
    """A place among the pending handshakes, or None (the stream must be closed)."""
    try:
        address = str(stream.socket.getpeername()[0])
    except OSError:  # the peer has already gone (ENOTCONN): nothing to serve
        return None
    return handshakes.admit(address)


async def handshake(tls: TLSStream | trio.SSLStream[trio.SocketStream], place: Place,
                    handshakes: PendingHandshakes, timeout: float) -> SiteIdentity | None:
    """The TLS handshake, within the connection's place; the peer's identity, or None if
    the handshake failed, took too long, or its place was given to another connection."""
    try:
        with place.scope, trio.fail_after(timeout):
            await tls.do_handshake()
        if place.evicted:
            return None
        return peer_identity(tls)
    except (trio.BrokenResourceError, trio.TooSlowError, CertificateError) as e:
        log.info("handshake refused: %s", _cause(e))
        return None
    finally:
        handshakes.release(place)


async def _refuse(tls: TLSStream | trio.SSLStream[trio.SocketStream], error: Error) -> None:
    """Tell an authenticated peer why it is refused, then close the TLS stream cleanly (a
    close_notify, not a bare EOF)."""
    with trio.move_on_after(2):
        try:
            await tls.send_all(Connection(Role.SERVER).send(error))
            await tls.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer has gone: there is nobody left to tell


def _close_at_once(stream: trio.SocketStream) -> None:
    """Close a connection we will not serve, now and without TLS: a reset frees the socket
    at once on both ends (no TIME_WAIT kept for it)."""
    try:
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass  # already reset by the peer: closing is all that is left
    stream.socket.close()


def _cause(error: BaseException) -> BaseException:
    """The TLS error behind trio's BrokenResourceError, for the log."""
    return error.__cause__ if error.__cause__ is not None else error


_SITE_NEUTRAL_OUTCOMES = frozenset({Grant, Refusal, Release, Failure, StoreUnavailable})
"""Outcomes of commands that change no site's state (seat commands, and any command that
recorded nothing)."""


def trio_now(start: datetime) -> Callable[[], datetime]:
    """Ledger time driven by trio's clock (so MockClock drives the ledger in tests)."""
    clock = trio.lowlevel.current_clock()  # readable from a worker thread too
    origin = clock.current_time()

    def now() -> datetime:
        return start + timedelta(seconds=clock.current_time() - origin)

    return now


__all__ = ["ACCEPT_CAPACITY_ERRNOS", "Master", "MasterSettings", "NoticeIssued", "Observed",
           "SiteStateChanged", "Standby", "handshake", "serve_listener", "trio_now"]
