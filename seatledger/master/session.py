"""One site's session: a :class:`transport.shell.Link` over any trio stream, and the dispatch
of the site's messages to ledger commands (through :mod:`seatledger.master.translate`).

The link does the bytes, the heartbeats, the bounded outbox and the protocol's errors; this
module only decides what each message means for the ledger:

* Hello     -> ConnectSite, answered Welcome (with the site's local limits);
* Sync      -> chunks gathered, then SyncSite, answered SyncDone;
* Acquire   -> AcquireSeat, queued to the writer and answered (Granted/Refused) once its
               batch is durable;
* Release   -> ReleaseSeat, likewise (Released);
* Goodbye / Error from the site end the session.

The capabilities a site's Hello names are remembered: after an operator releases seats at
the site (``seatledger site release``), :meth:`Session.reclaim` tells it with Reclaimed,
but only if it named ``reclaim`` (an older slave could not decode the message).

When a session ends, the site is recorded as disconnected with why: ``goodbye``,
``overloaded`` (it did not read its answers) or ``connection lost``. A site that connects
again replaces its previous session, which is aborted without recording anything.

:meth:`Sessions.serve` takes any :class:`trio.abc.Stream`: the master hands it a TLS stream
whose certificate has been admitted; tests hand it one end of a memory stream pair.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import trio

from ledger import (
    AcquireSeat,
    ConnectSite,
    DisconnectSite,
    Failure,
    HeldSeat,
    LedgerApp,
    OfflineEvent,
    ReleaseReason,
    ReleaseSeat,
    SyncResult,
    SyncSite,
)
from seatledger.master.settings import MasterSettings
from seatledger.master.translate import (
    STORE_UNAVAILABLE,
    answer_acquire,
    answer_release,
    held_seat,
    offline_event,
)
from seatledger.master.upstream import Upstream
from seatledger.master.writer import Request, StoreUnavailable, Writer
from transport import (
    TRANSITIONS,
    Acquire,
    Connection,
    Error,
    Goodbye,
    Hello,
    Message,
    Notice,
    Reclaimed,
    Release,
    Role,
    State,
    Sync,
    SyncDone,
    Welcome,
)
from transport._messages import RECLAIM
from transport.shell import CloseReason, Flusher, Link

# How a session's end is recorded (SiteDisconnected.reason); anything else is a lost link.
_DISCONNECT_REASONS = {CloseReason.PEER_GOODBYE: "goodbye", CloseReason.OVERLOADED: "overloaded"}
CONNECTION_LOST = "connection lost"

# A site is dropped after ``missed`` heartbeat intervals without a byte from it; its last
# heartbeat may be on its way just then, so the deadline allows this much more. (Without
# it the two race, and on trio's MockClock they fall on the same virtual instant.)
SILENCE_MARGIN = 0.5


class Session:
    """One connected site: its name, session id, and the link its messages travel on."""

    def __init__(self, site: str, session_id: str, link: Link) -> None:
        self.site = site
        self.id = session_id
        self.link = link
        self.capabilities: frozenset[str] = frozenset()
        """What the site's Hello said it understands (e.g. :data:`RECLAIM`)."""

    def send(self, message: Message) -> bool:
        """Queue ``message`` without waiting (a site that does not keep up is dropped)."""
        return self.link.send_nowait(message)

    def notify(self, message: Notice) -> None:
        """Send a notice if the protocol allows one now (from Welcome on)."""
        conn = self.link.conn
        if Notice in TRANSITIONS[conn.our_role][conn.our_state]:
            self.link.send_nowait(message)

    def reclaim(self, users: list[str]) -> None:
        """Tell the site an operator released ``users``' seats, if it understands Reclaimed
        (an older slave could not decode it) and its Sync has arrived: before that, the
        Sync on its way reports the seats the site holds, and the master counts them again
        (so both sides agree; the operator may release them again)."""
        if RECLAIM not in self.capabilities or (
                self.link.conn.our_state not in (State.SEND_SYNC_DONE, State.READY)):
            return
        for user in users:
            if not self.link.send_nowait(Reclaimed(
                    user, ReleaseReason.OPERATOR, "an operator at the master released this seat")):
                return  # the link is closing: nothing more reaches this session


class Sessions:
    """The master's site sessions, one per site, and what the master does to all of them."""

    def __init__(self, app: LedgerApp, writer: Writer, settings: MasterSettings) -> None:
        self.app = app
        self.writer = writer
        self.settings = settings
        self._sessions: dict[str, Session] = {}
        # Notices every site gets when it connects, as well as when they are issued (a
        # wall-clock step is news for sites that connect after it too).
        self.standing: list[Notice] = []
        self._numbers = itertools.count(1)
        self._changed = trio.lowlevel.ParkingLot()
        self.flusher = Flusher()
        """Writes every session's answers from one task (the master runs it)."""
        self.upstream: Upstream | None = None
        """Set on a chained master: acquires are asked upstream too."""

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, site: object) -> bool:
        return site in self._sessions

    def get(self, site: str) -> Session | None:
        return self._sessions.get(site)

    def sites(self) -> list[str]:
        return list(self._sessions)

    # ------------------------------------------------------------------ to every session
    def broadcast(self, message: Notice) -> None:
        for session in list(self._sessions.values()):
            session.notify(message)

    def reclaim(self, site: str, users: list[str]) -> None:
        """Tell ``site``, if connected, that an operator released ``users``' seats there --
        those the ledger does not show held again (a Sync committed after the release, in
        the same batch, counted them again)."""
        session = self._sessions.get(site)
        enrolled = self.app.licence.sites.get(site)
        if session is not None and enrolled is not None:
            session.reclaim([u for u in users if u not in enrolled.seats])

    def drop_revoked(self) -> None:
        """End the sessions of sites that are revoked (or no longer enrolled)."""
        sites = self.app.licence.sites
        for session in list(self._sessions.values()):
            site = sites.get(session.site)
            if site is None or site.revoked:
                # The link closes once the Error is written (or at once if it cannot be).
                session.send(Error("revoked", f"site {session.site!r} has been revoked"))

    def say_goodbye(self, text: str) -> None:
        for session in list(self._sessions.values()):
            session.send(Goodbye(text))

    async def wait_empty(self) -> None:
        """Wait until no session is open."""
        while self._sessions:
            await self._changed.park()

    # ------------------------------------------------------------------ one session
    async def serve(self, stream: trio.abc.Stream, site: str) -> None:
        """Run ``site``'s session over ``stream`` until it ends; the stream is closed after.

        ``site`` must already be admitted (its certificate names it and it is enrolled).
        """
        settings = self.settings
        missed = settings.missed_heartbeats
        link = Link(stream, Connection(Role.SERVER, peer_site=site),
                    heartbeat=settings.heartbeat_interval + SILENCE_MARGIN / missed,
                    missed=missed, outbox_size=settings.outbox_size, flusher=self.flusher)
        session = Session(site, f"{site}-{next(self._numbers)}", link)
        previous = self._sessions.get(site)
        if previous is not None:  # a site reconnecting replaces its stale session
            previous.link.abort()
        self._sessions[site] = session
        try:
            async with link, trio.open_nursery() as chained:
                await self._dispatch(session, chained)
        finally:
            if self._sessions.get(site) is session:
                del self._sessions[site]
                self._changed.unpark_all()
                reason = disconnect_reason(link.close_reason)
                # An outer cancellation means the daemon itself is stopping: the next start
                # records every site as disconnected, so nothing is lost by not waiting here.
                if self.writer.alive and trio.current_effective_deadline() != -math.inf:
                    await self.writer.submit(DisconnectSite(site, reason))

    async def _dispatch(self, session: Session, chained: trio.Nursery) -> None:
        """Turn the site's messages into ledger commands until it leaves. A chained
        master's acquires (asked upstream too) run in ``chained``, side by side."""
        link, site, send = session.link, session.site, session.send
        sync_events: list[OfflineEvent] = []
        sync_held: list[HeldSeat] = []
        upstream = self.upstream
        async for message in link:
            match message:
                case Acquire(request_id, user, agent_class, tenant, campaign):
                    command = AcquireSeat(site, user, agent_class, tenant, campaign)
                    reply = answer_acquire(send, request_id)
                    if upstream is None:
                        await self.writer.enqueue(Request(command, reply))
                    else:
                        chained.start_soon(upstream.acquire, command, reply)
                case Release(request_id, user):
                    await self.writer.enqueue(Request(
                        ReleaseSeat(site, user), answer_release(send, request_id, user)))
                case Hello(capabilities=capabilities):
                    session.capabilities = frozenset(capabilities)
                    outcome = await self.writer.submit(ConnectSite(site))
                    if isinstance(outcome, Failure | StoreUnavailable):
                        send(_error_for(outcome, "refused"))
                        return
                    limits = self.app.licence.sites[site].local_limits
                    send(Welcome(session.id, self.settings.heartbeat_interval, dict(limits),
                                 self.settings.origin))
                    for standing in self.standing:  # notices may come any time from here
                        session.notify(standing)
                case Sync(events, held, more):
                    sync_events += [offline_event(e) for e in events]
                    sync_held += [held_seat(h) for h in held]
                    if more:
                        continue
                    result = await self.writer.submit(
                        SyncSite(site, tuple(sync_events), tuple(sync_held)))
                    sync_events, sync_held = [], []
                    if not isinstance(result, SyncResult):
                        send(_error_for(result, "sync_failed"))
                        return
                    send(SyncDone(result.applied, result.skipped, result.reconciled))
                case Goodbye() | Error():
                    return  # the last message: the link ends the iteration


def disconnect_reason(close_reason: CloseReason | None) -> str:
    """How a session's end is recorded (SiteDisconnected.reason)."""
    if close_reason is None:
        return CONNECTION_LOST
    return _DISCONNECT_REASONS.get(close_reason, CONNECTION_LOST)


def _error_for(outcome: Any, code: str) -> Error:
    """The Error that ends a session whose Hello or Sync the ledger did not accept."""
    if isinstance(outcome, StoreUnavailable):
        return Error(STORE_UNAVAILABLE, outcome.error[:400])
    return Error(code, str(getattr(outcome, "error", outcome))[:400])


__all__ = ["CONNECTION_LOST", "Session", "Sessions", "disconnect_reason"]
