"""The slave connector: a site's permanent link to the master, and its rules when cut off.

A dialler embeds it (``async with SlaveConnector(bundle, state_dir) as s: await
s.acquire(...)``) or runs it as a daemon with a local socket (:mod:`seatledger.slave_socket`).

States, as DESIGN.md section 5 and the product we replace define them:

* ONLINE   - connected and synced; every acquire/release goes to the master, and its answer
             (given only after the master has committed) is the answer.
* OFFLINE  - the master is unreachable. Log-ons are granted up to the site's local limit per
             class and journalled durably with their time and a growing sequence number.
             The primary, then the secondary, is retried every ``retry_interval``.
* CUT_OFF  - after ``cutoff_attempts`` failed rounds (or at once for a site with no local
             limit). The seats held are dropped (the master releases them too), and at most
             ``demo_limit`` agents may log on; the masters are retried every ``cutoff_retry``.

On reconnection the journal and the seats held now are sent in a Sync; once the master
answers SyncDone the journal is trimmed. The journal holds at most ``journal_cap`` events;
alerts rise in severity as it fills, and when it is full log-ons are refused, never lost.
"""

from __future__ import annotations

import itertools
import logging
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import trio

from seatledger.config.bundle import Bundle
from seatledger.slave.journal import HeldSeat as LocalSeat
from seatledger.slave.journal import Journal
from transport import (
    CLOSED,
    NEED_DATA,
    PROTOCOL_VERSION,
    Acquire,
    Connection,
    Error,
    Goodbye,
    Granted,
    Heartbeat,
    HeldSeat,
    Hello,
    Notice,
    OfflineEvent,
    ProtocolError,
    Refused,
    Release,
    Released,
    Role,
    Sync,
    SyncDone,
    Welcome,
)
from transport.tls import client_context

log = logging.getLogger("seatledger.slave")

ONLINE = "online"
CONNECTING = "connecting"
OFFLINE = "offline"
CUT_OFF = "cut_off"

SYNC_CHUNK = 500  # offline events per Sync message, well inside the frame limit


@attrs.frozen
class SlaveSettings:
    retry_interval: float = 300.0
    cutoff_attempts: int = 3
    cutoff_retry: float = 900.0
    demo_limit: int = 5
    journal_cap: int = 1_000_000
    connect_timeout: float = 10.0
    request_timeout: float = 30.0
    missed_heartbeats: int = 3


@attrs.frozen
class SeatAnswer:
    user: str
    agent_class: str
    seat: str
    status: str  # "normal" | "overuse" | "offline" | "demo"
    deadline: datetime | None = None


class SeatRefusedError(Exception):
    """A log-on was refused; ``reason`` is the reason code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@attrs.frozen
class Alert:
    severity: str
    text: str
    at: datetime


class _MasterLink:
    """One live, synced connection to a master."""

    def __init__(self, stream: trio.SSLStream[Any], conn: Connection, limits: dict[str, int],
                 heartbeat: float):
        self.stream = stream
        self.conn = conn
        self.limits = limits
        self.heartbeat = heartbeat
        self.waiting: dict[int, tuple[trio.Event, list[Any]]] = {}
        self.send_lock = trio.Lock()

    async def send(self, message: Any) -> None:
        async with self.send_lock:
            await self.stream.send_all(self.conn.send(message))


class SlaveConnector:
    """See the module docstring."""

    def __init__(self, bundle: Bundle, state_dir: Path, *,
                 settings: SlaveSettings = SlaveSettings(),
                 now: Callable[[], datetime] | None = None):
        self.bundle = bundle
        self.settings = settings
        self.state_dir = state_dir
        self.journal = Journal(state_dir / "journal.db")
        self.context: ssl.SSLContext = client_context(bundle.ca_pem.encode(),
                                                      bundle.cert_pem.encode(),
                                                      bundle.key_pem.encode())
        self._now = now or (lambda: datetime.now(UTC))
        self.state = CONNECTING
        self.local_limits: dict[str, int] = {}
        self.failed_rounds = 0
        self.alerts: list[Alert] = []
        self.on_alert: Callable[[Alert], None] | None = None
        self._link: _MasterLink | None = None
        self._ids = itertools.count(1)
        self._online = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._journal_level = 0
        self.connected_to: str | None = None
        self.synced: list[tuple[int, int, int]] = []

    # ---------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> SlaveConnector:
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        self._nursery.start_soon(self._run)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._nursery is not None
        link = self._link
        if link is not None:
            with trio.move_on_after(1):
                try:
                    await link.send(Goodbye("slave stopping"))
                except (trio.BrokenResourceError, trio.ClosedResourceError, ProtocolError):
                    pass
        self._nursery.cancel_scope.cancel()
        await self._nursery_manager.__aexit__(*exc)
        self.journal.close()

    async def wait_online(self) -> None:
        await self._online.wait()

    def seats(self) -> dict[str, LocalSeat]:
        return self.journal.seats()

    def _alert(self, severity: str, text: str) -> None:
        alert = Alert(severity, text, self._now())
        self.alerts.append(alert)
        log.info("%s: %s", severity, text)
        if self.on_alert is not None:
            self.on_alert(alert)

    # ---------------------------------------------------------------- the dialler's API
    async def acquire(self, user: str, agent_class: str, tenant: str = "",
                      campaign: str = "") -> SeatAnswer:
        """Ask for a seat. Raises SeatRefusedError with the reason when refused."""
        held = self.journal.seats().get(user)
        if held is not None:
            return SeatAnswer(user, held.agent_class, held.seat, held.status)
        link = self._link
        if link is not None:
            try:
                answer = await self._request(link, Acquire(next(self._ids), user, agent_class,
                                                           tenant, campaign))
            except _LinkLost:
                answer = None
            if isinstance(answer, Granted):
                deadline = (datetime.fromtimestamp(answer.grace_deadline, UTC)
                            if answer.grace_deadline is not None else None)
                self.journal.hold(LocalSeat(user, agent_class, tenant, campaign, answer.seat,
                                            answer.status))
                return SeatAnswer(user, agent_class, answer.seat, answer.status, deadline)
            if isinstance(answer, Refused):
                raise SeatRefusedError(answer.reason, answer.detail)
        return self._acquire_offline(user, agent_class, tenant, campaign)

    async def release(self, user: str) -> None:
        """Give a seat back. Raises SeatRefusedError('unknown_seat') if none is held."""
        if user not in self.journal.seats():
            raise SeatRefusedError("unknown_seat", f"user {user!r} holds no seat here")
        link = self._link
        if link is not None:
            try:
                answer = await self._request(link, Release(next(self._ids), user))
            except _LinkLost:
                answer = None
            if isinstance(answer, Released):
                self.journal.drop(user)
                return
        held = self.journal.seats()[user]
        self.journal.append("release", user, held.agent_class, held.tenant, held.campaign,
                            self._now())
        self._check_journal()

    def _acquire_offline(self, user: str, agent_class: str, tenant: str,
                         campaign: str) -> SeatAnswer:
        seats = self.journal.seats()
        if self.journal.count() >= self.settings.journal_cap:
            raise SeatRefusedError("journal_full", "the offline journal is full: log-ons are "
                                                   "refused until a master is reachable")
        if self.state == CUT_OFF:
            if len(seats) >= self.settings.demo_limit:
                raise SeatRefusedError("cut_off", f"cut off from the master: demo limit of "
                                                  f"{self.settings.demo_limit} agents reached")
            status = "demo"
        else:
            limit = self.local_limits.get(agent_class)
            if limit is None:
                raise SeatRefusedError("no_local_limit", f"the master is unreachable and this "
                                                         f"site has no local {agent_class} limit")
            in_use = sum(1 for s in seats.values() if s.agent_class == agent_class)
            if in_use + 1 > limit:
                raise SeatRefusedError("site_limit", f"offline: local {agent_class} limit "
                                                     f"{limit} reached")
            status = "offline"
        seq = self.journal.append("grant", user, agent_class, tenant, campaign, self._now(),
                                  LocalSeat(user, agent_class, tenant, campaign, "", status))
        self._check_journal()
        return SeatAnswer(user, agent_class, f"offline-{seq}", status)

    def _check_journal(self) -> None:
        fill = self.journal.count() / self.settings.journal_cap
        for level, (threshold, severity) in enumerate(
                ((0.5, "warning"), (0.8, "high"), (0.95, "critical"), (1.0, "full")), start=1):
            if fill >= threshold and self._journal_level < level:
                self._journal_level = level
                self._alert(severity, f"offline journal {fill:.0%} full "
                                      f"({self.journal.count()} of {self.settings.journal_cap})")

    async def _request(self, link: _MasterLink, message: Any) -> Any:
        done = trio.Event()
        box: list[Any] = []
        link.waiting[message.request_id] = (done, box)
        try:
            await link.send(message)
            with trio.fail_after(self.settings.request_timeout):
                await done.wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError,
                ProtocolError):
            raise _LinkLost() from None
        finally:
            link.waiting.pop(message.request_id, None)
        if not box:
            raise _LinkLost()
        return box[0]

    # ---------------------------------------------------------------- connecting
    async def _run(self) -> None:
        first = True
        while True:
            for host, port in self.bundle.addresses():
                try:
                    link = await self._connect(host, port)
                except (OSError, trio.BrokenResourceError, trio.TooSlowError, ProtocolError,
                        ssl.SSLError, _Refused) as e:
                    log.info("cannot reach master %s:%s: %s", host, port, e)
                    continue
                self.connected_to = f"{host}:{port}"
                self.failed_rounds = 0
                await self._serve(link)
                self.connected_to = None
                first = True
                break
            else:
                if not first:
                    self.failed_rounds += 1
                self._went_offline(first)
                first = False
                interval = (self.settings.cutoff_retry if self.state == CUT_OFF
                            else self.settings.retry_interval)
                await trio.sleep(interval)

    def _went_offline(self, first: bool) -> None:
        if self.state == CONNECTING:
            self.state = OFFLINE
            self._alert("warning", "master unreachable: working offline within local limits")
        if self.state == OFFLINE and (not self.local_limits or
                                      self.failed_rounds >= self.settings.cutoff_attempts):
            self.state = CUT_OFF
            for user, seat in self.journal.seats().items():
                self.journal.append("release", user, seat.agent_class, seat.tenant,
                                    seat.campaign, self._now())
            self._alert("critical", f"cut off from the master: campaigns stopped, demo limit "
                                    f"of {self.settings.demo_limit} agents")

    async def _connect(self, host: str, port: int) -> _MasterLink:
        with trio.fail_after(self.settings.connect_timeout):
            tcp = await trio.open_tcp_stream(host, port)
            stream = trio.SSLStream(tcp, self.context, server_hostname=host)
            try:
                await stream.do_handshake()
                conn = Connection(Role.CLIENT)
                await stream.send_all(conn.send(Hello(self.bundle.site, PROTOCOL_VERSION)))
                welcome = await _next(stream, conn)
                if not isinstance(welcome, Welcome):
                    raise _Refused(f"expected Welcome, got {type(welcome).__name__}")
                link = _MasterLink(stream, conn, dict(welcome.limits), welcome.heartbeat_interval)
                self.local_limits = dict(welcome.limits)
                entries = self.journal.pending()
                held = [HeldSeat(s.user, s.agent_class, s.tenant, s.campaign)
                        for s in self.journal.seats().values()]
                chunks = [entries[i:i + SYNC_CHUNK] for i in range(0, len(entries), SYNC_CHUNK)]
                chunks = chunks or [[]]
                for n, chunk in enumerate(chunks):
                    last = n == len(chunks) - 1
                    events = tuple(OfflineEvent(e.seq, e.kind, e.user, e.agent_class, e.tenant,
                                                e.campaign, e.occurred_at.timestamp())
                                   for e in chunk)
                    await stream.send_all(conn.send(Sync(events, tuple(held) if last else (),
                                                         not last)))
                done = await _next(stream, conn)
                if not isinstance(done, SyncDone):
                    raise _Refused(f"expected SyncDone, got {type(done).__name__}")
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        if entries:
            self.journal.trim(entries[-1].seq)
        self.synced.append((done.applied, done.skipped, done.reconciled))
        if self.state != ONLINE:
            if self.state in (OFFLINE, CUT_OFF):
                self._alert("info", f"master reachable again: journal synced ({done.applied} "
                                    f"applied, {done.skipped} already known)")
            self.state = ONLINE
        self._journal_level = 0
        self._online.set()
        return link

    async def _serve(self, link: _MasterLink) -> None:
        self._link = link
        try:
            async with trio.open_nursery() as n:
                n.start_soon(self._heartbeats, link)
                await self._receive(link)
                n.cancel_scope.cancel()
        finally:
            self._link = None
            self._online = trio.Event()
            if self.state == ONLINE:
                self.state = OFFLINE
                self._alert("warning", "lost the master: working offline within local limits")
            for done, _box in list(link.waiting.values()):
                done.set()
            await trio.aclose_forcefully(link.stream)

    async def _heartbeats(self, link: _MasterLink) -> None:
        while True:
            await trio.sleep(link.heartbeat)
            try:
                await link.send(Heartbeat())
            except (trio.BrokenResourceError, trio.ClosedResourceError, ProtocolError):
                return

    async def _receive(self, link: _MasterLink) -> None:
        silence = link.heartbeat * self.settings.missed_heartbeats
        while True:
            try:
                event = link.conn.next_event()
            except ProtocolError as e:
                log.warning("protocol error from master: %s", e)
                return
            if event is NEED_DATA:
                with trio.move_on_after(silence) as quiet:
                    try:
                        data = await link.stream.receive_some(65536)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return
                if quiet.cancelled_caught:
                    log.warning("master silent for %.0fs: reconnecting", silence)
                    return
                link.conn.receive_data(data)
                continue
            if event is CLOSED or isinstance(event, (Goodbye, Error)):
                return
            if isinstance(event, (Granted, Refused, Released)):
                waiter = link.waiting.get(event.request_id)
                if waiter is not None:
                    waiter[1].append(event)
                    waiter[0].set()
            elif isinstance(event, Notice):
                self._alert(event.severity, event.text)


class _LinkLost(Exception):
    pass


class _Refused(Exception):
    pass


async def _next(stream: trio.SSLStream[Any], conn: Connection) -> Any:
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(data)
            continue
        if event is CLOSED:
            raise _Refused("the master closed the connection")
        if isinstance(event, Error):
            raise _Refused(f"master refused: {event.code}: {event.text}")
        if isinstance(event, (Heartbeat, Notice)):
            continue
        return event
