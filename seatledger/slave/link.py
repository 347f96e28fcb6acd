"""The slave's connection to one master, over :class:`transport.shell.Link`.

:func:`open_tls_stream` connects (TCP, then mutual TLS). :func:`run_session`, over any trio
stream, says Hello, learns the heartbeat and the site's local limits from Welcome, sends the
journal in Sync chunks, and once the master has answered SyncDone hands the connector a
:class:`MasterLink` and serves it until the link ends: answers go to the requests waiting for
them, Notices and Reclaimed (an operator at the master released a seat) to the connector.
The heartbeats, the silence watchdog and the outbox are the shell's.

Nothing here knows the offline rules or the journal: the connector supplies the Sync's
content and decides what to do with a request the master did not answer.
"""

from __future__ import annotations

import itertools
import logging
import ssl
from collections.abc import Callable
from typing import TypeVar

import attrs
import trio

from seatledger.slave.errors import LinkLostError, MasterUnreachableError
from transport import (
    PROTOCOL_VERSION,
    Acquire,
    Connection,
    Error,
    Goodbye,
    Granted,
    HeldSeat,
    Hello,
    Message,
    Notice,
    OfflineEvent,
    Reclaimed,
    Refused,
    Release,
    Released,
    Role,
    Sync,
    SyncDone,
    Welcome,
)
from transport._messages import RECLAIM, STANDBY
from transport.shell import CloseReason, Link

log = logging.getLogger("seatledger.slave")

SYNC_CHUNK = 500  # offline events per Sync message, well inside the frame limit

Answer = Granted | Refused | Released
News = Notice | Reclaimed
"""What the master may send any time from Welcome on, for the connector."""


class StandbyMasterError(MasterUnreachableError):
    """The master answered ``standby``: another master is (or is about to be) active."""


@attrs.frozen
class SyncPayload:
    """What a Sync delivers: the journal's events, in increasing seq, and the seats held."""

    events: tuple[OfflineEvent, ...] = ()
    held: tuple[HeldSeat, ...] = ()

    @property
    def last_seq(self) -> int | None:
        return self.events[-1].seq if self.events else None


def sync_messages(payload: SyncPayload, chunk: int = SYNC_CHUNK) -> list[Sync]:
    """The payload as Sync messages of at most ``chunk`` events; the held seats go in the
    last, and there is always at least one."""
    events = payload.events
    chunks = [events[i:i + chunk] for i in range(0, len(events), chunk)] or [()]
    last = len(chunks) - 1
    return [Sync(c, payload.held if n == last else (), n != last) for n, c in enumerate(chunks)]


class _Waiter:
    __slots__ = ("answer", "done")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.answer: Answer | None = None


class MasterLink:
    """One synced session with a master: requests and their answers."""

    def __init__(self, link: Link, address: str, welcome: Welcome) -> None:
        self.address = address
        self.session = welcome.session
        self.limits: dict[str, int] = dict(welcome.limits)
        self.origin = welcome.origin
        """The master's origin (the name its audit trail is signed under; "" from older)."""
        self._link = link
        self._ids = itertools.count(1)
        self._waiting: dict[int, _Waiter] = {}

    def next_id(self) -> int:
        return next(self._ids)

    async def request(self, message: Acquire | Release) -> Answer:
        """Send ``message`` and wait for its answer (no time limit: the caller sets one).

        Raises:
            LinkLostError: the link ended before the answer came.
        """
        waiter = _Waiter()
        self._waiting[message.request_id] = waiter
        try:
            try:
                await self._link.send(message)
            except trio.ClosedResourceError:
                raise LinkLostError("the link to the master is closed") from None
            await waiter.done.wait()
        finally:
            self._waiting.pop(message.request_id, None)
        if waiter.answer is None:
            raise LinkLostError("the link to the master ended before it answered")
        return waiter.answer

    def goodbye(self, reason: str) -> None:
        """Say Goodbye; the link closes once it is written."""
        self._link.send_nowait(Goodbye(reason))

    def abort(self) -> None:
        """Drop the link now (a master that does not answer is treated as lost)."""
        self._link.abort()

    @property
    def close_reason(self) -> CloseReason | None:
        return self._link.close_reason

    async def serve(self, on_news: Callable[[News], None]) -> None:
        """Hand answers to their requests, and Notices and Reclaimed to ``on_news``, until
        the link ends."""
        try:
            async for message in self._link:
                if isinstance(message, Granted | Refused | Released):
                    waiter = self._waiting.get(message.request_id)
                    if waiter is not None:  # else it was given up on: nobody to tell
                        waiter.answer = message
                        waiter.done.set()
                elif isinstance(message, Notice | Reclaimed):
                    on_news(message)
                elif isinstance(message, Goodbye | Error):
                    log.info("master %s closed the session: %s", self.address, message)
        finally:
            for waiter in self._waiting.values():
                waiter.done.set()


async def open_tls_stream(address: tuple[str, int], context: ssl.SSLContext, *,
                          timeout: float) -> trio.SSLStream[trio.SocketStream]:
    """A mutual-TLS stream to the master at ``address``, handshake done.

    Raises:
        MasterUnreachableError: no connection, or the TLS handshake failed or took longer
            than ``timeout`` seconds (the cause is chained).
    """
    host, port = address
    try:
        with trio.fail_after(timeout):
            tcp = await trio.open_tcp_stream(host, port)
            stream = trio.SSLStream(tcp, context, server_hostname=host)
            try:
                await stream.do_handshake()
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
    except (OSError, trio.TooSlowError, trio.BrokenResourceError) as e:
        raise MasterUnreachableError(f"cannot reach {host}:{port}: {e}") from e
    return stream


async def run_session(stream: trio.abc.Stream, address: str, site: str, *,
                      payload: Callable[[], SyncPayload],
                      on_synced: Callable[[MasterLink, SyncDone, SyncPayload], None],
                      on_notice: Callable[[Notice], None],
                      on_reclaimed: Callable[[Reclaimed], None] | None = None,
                      handshake_timeout: float, missed_heartbeats: int,
                      chunk: int = SYNC_CHUNK) -> CloseReason | None:
    """Say Hello over ``stream`` (to the master at ``address``), sync, and serve the session
    until it ends; the stream is closed on return.

    ``payload`` is asked for the Sync's content once Welcome has come; ``on_synced`` is
    called once SyncDone has (with what was sent), before any request can be made.
    Notices go to ``on_notice`` and Reclaimed to ``on_reclaimed``, from Welcome on; given
    ``on_reclaimed``, the Hello names the capability ``reclaim`` (the master sends Reclaimed
    only then). Returns why the synced session ended.

    Raises:
        StandbyMasterError: the master is a standby (try the other one now).
        MasterUnreachableError: no synced session was established (the cause is chained).
    """
    def on_news(message: News) -> None:
        if isinstance(message, Notice):
            on_notice(message)
        elif on_reclaimed is not None:
            on_reclaimed(message)

    capabilities = (RECLAIM,) if on_reclaimed is not None else ()
    master: MasterLink | None = None
    async with Link(stream, Connection(Role.CLIENT), missed=missed_heartbeats) as link:
        try:
            with trio.fail_after(handshake_timeout):
                await link.send(Hello(site, PROTOCOL_VERSION, capabilities))
                welcome = await _expect(link, Welcome, on_news)
                link.heartbeat = welcome.heartbeat_interval
                sent = payload()
                for message in sync_messages(sent, chunk):
                    await link.send(message)
                done = await _expect(link, SyncDone, on_news)
        except _StandbyAnswer as e:
            raise StandbyMasterError(f"{address} is a standby master: {e}") from e
        except (trio.TooSlowError, trio.EndOfChannel, trio.ClosedResourceError,
                _UnexpectedError) as e:
            raise MasterUnreachableError(f"no session with {address}: {e}") from e
        master = MasterLink(link, address, welcome)
        on_synced(master, done, sent)
        await master.serve(on_news)
    if master is None:
        raise MasterUnreachableError(f"no session with {address}: the link closed during "
                                     f"the handshake ({link.close_reason})")
    return link.close_reason


class _UnexpectedError(Exception):
    """The master answered the handshake with something else (an Error, usually)."""


class _StandbyAnswer(_UnexpectedError):
    """The master answered the handshake with Error ``standby``."""


M = TypeVar("M", bound=Message)


async def _expect(link: Link, kind: type[M], on_news: Callable[[News], None]) -> M:
    """The next message, which must be a ``kind``; notices and reclaimed seats (which the
    master may send any time from Welcome on, e.g. another site's over-use) are handed on
    meanwhile."""
    while True:
        try:
            message = await link.receive()
        except trio.EndOfChannel:
            farewell = link.farewell
            if isinstance(farewell, Error) and farewell.code == STANDBY:
                raise _StandbyAnswer(farewell.text) from None
            reason = link.close_reason.value if link.close_reason else "closed"
            detail = f" ({link.remote_error})" if link.remote_error else ""
            raise _UnexpectedError(f"the master closed the connection: {reason}{detail}"
                                   ) from None
        if not isinstance(message, Notice | Reclaimed):
            break
        on_news(message)
    if isinstance(message, kind):
        return message
    if isinstance(message, Error):
        if message.code == STANDBY:
            raise _StandbyAnswer(message.text)
        raise _UnexpectedError(f"master refused: {message.code}: {message.text}")
    raise _UnexpectedError(f"expected {kind.__name__}, got {type(message).__name__}")


__all__ = ["SYNC_CHUNK", "Answer", "MasterLink", "News", "StandbyMasterError", "SyncPayload",
           "open_tls_stream", "run_session", "sync_messages"]
