"""The trio shell: one loop that moves a :class:`~transport.Connection`'s bytes over a stream.

The sans-IO core (``transport``'s top level) knows the protocol; this module only moves bytes
and time, over any :class:`trio.abc.Stream` (a ``trio.SSLStream`` in the daemons, a
``trio.testing.memory_stream_pair`` end in tests). Both the master and the slave use it.

Usage::

    conn = Connection(Role.SERVER, peer_site=identity.name)
    async with Link(stream, conn, heartbeat=10.0, missed=3, outbox_size=4096) as link:
        async for message in link:          # every message but Heartbeat, in order
            ...
            link.send_nowait(reply)         # never waits; from any task
    # here the link is closed and the stream too; ``link.close_reason`` says why

What the link does for you
==========================

Receiving
    :meth:`Link.receive` (and ``async for``) returns whole messages; Heartbeats are consumed
    here. The peer's Goodbye or Error is returned as the last message; after it, and after the
    peer closes or breaks the stream, iteration ends (:meth:`~Link.receive` raises
    :class:`trio.EndOfChannel`). If the peer breaks the protocol, the link answers with an
    ``Error`` carrying the :class:`~transport.RemoteProtocolError`'s code, closes, and ends
    iteration; the error is kept in :attr:`Link.remote_error`. Only that connection is
    affected: nothing from a bad frame reaches the caller.

Sending
    A bounded outbox (``outbox_size`` messages) and one sender task that writes whatever is
    ready as one ``send_all`` (up to ``write_size`` bytes), so a burst of answers costs one
    TLS record instead of one each. :meth:`Link.send_nowait` never waits: a peer that does not
    read its answers fills its outbox, and the link is marked overloaded and dropped, so it
    can never hold up the task (the master's writer) that answers every site.
    :meth:`Link.send` waits for room instead, for a caller that should feel backpressure
    (the slave's own requests and Sync chunks). Messages are encoded when queued, so a
    :class:`~transport.LocalProtocolError` (our bug) is raised at the call that caused it.
    Once we have queued a Goodbye or Error, or the peer has left, nothing more is accepted;
    after our Goodbye or Error is written the link closes.

Heartbeats
    With ``heartbeat`` set (seconds), a Heartbeat is sent after that long without a write,
    whenever the state table allows one (not before Welcome), and the peer is declared dead
    after ``missed * heartbeat`` seconds without a byte from it, or with one write stuck that
    long. ``heartbeat=None`` turns both off until :attr:`Link.heartbeat` is set (the slave
    learns the interval from Welcome). The peer's silence is tracked as one timestamp per
    connection, updated on each read, and checked by one watchdog task that sleeps until the
    earliest due time: no cancel scope per read or per write.

Closing
    The link's lifetime is the ``async with`` block, and the link owns one cancel scope that
    covers the block's body and the link's tasks. When the body ends (normally, at the end of
    iteration, or with an exception), what is queued is flushed for at most ``close_timeout``
    seconds, then the stream is closed. Abrupt endings (peer silent or stuck, overloaded, our
    Goodbye/Error written, :meth:`Link.abort`) cancel that scope, which also cancels the body
    wherever it is waiting: put per-connection clean-up after the ``async with`` (or in a
    ``finally``), and read :attr:`Link.close_reason` there. An exception from the body
    propagates unchanged (not wrapped in an exception group). :meth:`Link.aclose` flushes and
    closes from any task; it is idempotent.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType

import attrs
import trio

from ._connection import CLOSED, NEED_DATA, Connection
from ._errors import RemoteProtocolError
from ._messages import Error, Goodbye, Heartbeat, Message
from ._state import TRANSITIONS

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_OUTBOX_SIZE",
    "DEFAULT_RECEIVE_SIZE",
    "DEFAULT_WRITE_SIZE",
    "CloseReason",
    "Flusher",
    "Link",
    "LinkStatistics",
]

DEFAULT_OUTBOX_SIZE = 4096
DEFAULT_RECEIVE_SIZE = 65536
DEFAULT_WRITE_SIZE = 256 * 1024
DEFAULT_CLOSE_TIMEOUT = 2.0

# The text of an Error we send is bounded on the wire (4096 characters).
_ERROR_TEXT_LIMIT = 400


class CloseReason(enum.Enum):
    """Why a link closed (:attr:`Link.close_reason`)."""

    LOCAL_CLOSE = "local_close"
    """Our side ended it: the ``async with`` body finished, or :meth:`Link.aclose`."""
    ABORTED = "aborted"
    """:meth:`Link.abort` (for instance a site reconnected and replaces this link)."""
    GOODBYE_SENT = "goodbye_sent"
    """We sent Goodbye."""
    ERROR_SENT = "error_sent"
    """We sent Error (other than in answer to a protocol error)."""
    PEER_GOODBYE = "peer_goodbye"
    """The peer said Goodbye: a clean end."""
    PEER_ERROR = "peer_error"
    """The peer sent Error."""
    PEER_CLOSED = "peer_closed"
    """The peer closed the stream without a word."""
    PEER_LOST = "peer_lost"
    """The stream broke (reset, TLS failure)."""
    PEER_SILENT = "peer_silent"
    """Nothing arrived for ``missed * heartbeat`` seconds."""
    PEER_STALLED = "peer_stalled"
    """One write did not complete in ``missed * heartbeat`` seconds: the peer is not reading."""
    OVERLOADED = "overloaded"
    """The outbox was full: the peer does not keep up with its answers."""
    PROTOCOL_ERROR = "protocol_error"
    """The peer broke the protocol; we answered Error (see :attr:`Link.remote_error`)."""


# Endings after which what is queued is still worth writing.
_FLUSHABLE = frozenset(
    {
        CloseReason.LOCAL_CLOSE,
        CloseReason.GOODBYE_SENT,
        CloseReason.ERROR_SENT,
        CloseReason.PEER_GOODBYE,
        CloseReason.PEER_ERROR,
        CloseReason.PROTOCOL_ERROR,
    }
)


@attrs.frozen
class LinkStatistics:
    """A snapshot of a :class:`Link` (see :meth:`Link.statistics`)."""

    outbox_used: int
    """Messages queued and not yet handed to the stream."""
    outbox_size: int
    messages_sent: int
    """Messages written, Heartbeats included."""
    messages_received: int
    """Whole messages received, Heartbeats included."""
    bytes_sent: int
    bytes_received: int
    writes: int
    """Calls to ``send_all``; fewer than ``messages_sent`` when messages were coalesced."""
    heartbeats_sent: int
    pending_requests: int
    """Requests sent or received and not yet answered (from the connection)."""
    close_reason: CloseReason | None
    """None while the link is open."""


class Link:
    """A :class:`~transport.Connection` driven over a :class:`trio.abc.Stream`.

    Use it as ``async with Link(...) as link``; see the module docstring for the behaviour.

    ``heartbeat``: seconds between heartbeats, or None for none (yet). ``missed``: how many
    intervals of silence declare the peer dead. ``outbox_size``: messages queued at most.
    ``write_size``: bytes coalesced into one write at most (a larger single message is written
    whole). ``receive_size``: bytes asked of the stream per read. ``close_timeout``: seconds
    the outbox may take to drain when the link closes cleanly.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        conn: Connection,
        *,
        heartbeat: float | None = None,
        missed: int = 3,
        outbox_size: int = DEFAULT_OUTBOX_SIZE,
        write_size: int = DEFAULT_WRITE_SIZE,
        receive_size: int = DEFAULT_RECEIVE_SIZE,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        flusher: Flusher | None = None,
    ) -> None:
        if missed < 1:
            raise ValueError("missed must be at least 1")
        if outbox_size < 1:
            raise ValueError("outbox_size must be at least 1")
        _check_interval(heartbeat)
        self.stream = stream
        self.conn = conn
        self._heartbeat = heartbeat
        self._missed = missed
        self._outbox_size = outbox_size
        self._write_size = write_size
        self._receive_size = receive_size
        self._close_timeout = close_timeout

        self._outbox: deque[bytes] = deque()
        self._writing = False
        self._write_started = -math.inf
        self._last_sent = -math.inf
        self._reading = False  # receive() is waiting for the peer's bytes
        self._waiting_since = -math.inf  # ... since then
        self._has_outbox = trio.lowlevel.ParkingLot()  # the sender waits here for data
        self._has_room = trio.lowlevel.ParkingLot()  # send() waits here for room
        self._drained = trio.lowlevel.ParkingLot()  # closing waits here for the sender
        self._retimed = trio.lowlevel.ParkingLot()  # the watchdog waits here
        # Written by the flusher, not the sender task, when the stream can write without
        # waiting (see Flusher).
        self._flusher = flusher if hasattr(stream, "send_nowait") else None
        self._timing_write = False  # ... towards a write's stall deadline

        self._scope: trio.CancelScope | None = None
        self._lifetime: AbstractAsyncContextManager[Link] | None = None
        self._accepting = True  # send_nowait/send still take messages
        self._farewell_queued = False  # our Goodbye/Error is in the outbox
        self._receiving = True  # receive() may still return messages
        self._closed = False  # the stream has been closed
        self._close_reason: CloseReason | None = None
        self.remote_error: RemoteProtocolError | None = None
        """The peer's protocol violation, if that is how the link ended."""
        self.farewell: Goodbye | Error | None = None
        """The peer's Goodbye or Error, if it sent one."""

        self._messages_sent = 0
        self._messages_received = 0
        self._bytes_sent = 0
        self._bytes_received = 0
        self._writes = 0
        self._heartbeats_sent = 0

    # --- inspection -----------------------------------------------------------------------

    @property
    def close_reason(self) -> CloseReason | None:
        """Why the link closed, or None while it is open (the first reason wins)."""
        return self._close_reason

    @property
    def overloaded(self) -> bool:
        """True if the link was dropped because its outbox filled up."""
        return self._close_reason is CloseReason.OVERLOADED

    @property
    def heartbeat(self) -> float | None:
        """Seconds between heartbeats; None turns heartbeats and silence detection off.

        Setting it takes effect at once; the silence is counted from the moment of setting
        at the earliest.
        """
        return self._heartbeat

    @heartbeat.setter
    def heartbeat(self, interval: float | None) -> None:
        _check_interval(interval)
        if interval is not None and self._heartbeat is None:
            now = trio.current_time()
            self._waiting_since = max(self._waiting_since, now)
            self._last_sent = max(self._last_sent, now)
        self._heartbeat = interval
        self._retimed.unpark_all()

    def statistics(self) -> LinkStatistics:
        """Counters and the outbox level, as a frozen snapshot."""
        return LinkStatistics(
            outbox_used=len(self._outbox),
            outbox_size=self._outbox_size,
            messages_sent=self._messages_sent,
            messages_received=self._messages_received,
            bytes_sent=self._bytes_sent,
            bytes_received=self._bytes_received,
            writes=self._writes,
            heartbeats_sent=self._heartbeats_sent,
            pending_requests=self.conn.pending_requests,
            close_reason=self._close_reason,
        )

    # --- lifetime -------------------------------------------------------------------------

    async def __aenter__(self) -> Link:
        if self._lifetime is not None:
            raise RuntimeError("a Link can be entered only once")
        self._lifetime = self._run()
        return await self._lifetime.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._lifetime is not None
        return await self._lifetime.__aexit__(exc_type, exc, tb)

    @asynccontextmanager
    async def _run(self) -> AsyncIterator[Link]:
        now = trio.current_time()
        self._waiting_since = self._last_sent = now
        body_error: Exception | None = None
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                nursery.start_soon(self._send_loop)
                nursery.start_soon(self._watchdog)
                try:
                    yield self
                except Exception as exc:
                    # Re-raised below, outside the nursery, so the caller sees it unwrapped.
                    body_error = exc
                self._end(CloseReason.LOCAL_CLOSE)
                if body_error is None and self._close_reason in _FLUSHABLE:
                    nursery.cancel_scope.deadline = min(
                        nursery.cancel_scope.deadline, trio.current_time() + self._close_timeout
                    )
                    await self._flush()
                nursery.cancel_scope.cancel()
        finally:
            self._accepting = self._receiving = False
            await self._close_stream()
        if body_error is not None:
            raise body_error

    async def aclose(self) -> None:
        """Flush what is queued (for at most ``close_timeout`` s), close, end the link.

        Idempotent. Called from inside the ``async with`` body, the body is cancelled at its
        next checkpoint after this returns.
        """
        if self._close_reason is None or self._close_reason in _FLUSHABLE:
            self._end(CloseReason.LOCAL_CLOSE)
            with trio.move_on_after(self._close_timeout):
                await self._flush()
        self._cancel()
        await self._close_stream()

    def abort(self) -> None:
        """End the link now, writing nothing more; the ``async with`` body is cancelled."""
        self._fail(CloseReason.ABORTED)

    async def _flush(self) -> None:
        """Wait until the sender has written the outbox (the caller bounds the wait)."""
        if self._scope is None or self._closed:
            await trio.lowlevel.checkpoint()
            return
        while (self._outbox or self._writing or self._stream_unsent()) and (
                not self._scope.cancel_called):
            await self._drained.park()

    async def _close_stream(self) -> None:
        if not self._closed:
            self._closed = True
            await trio.aclose_forcefully(self.stream)

    def _end(self, reason: CloseReason) -> None:
        """Record why the link ends (the first reason wins); accept nothing more."""
        if self._close_reason is None:
            self._close_reason = reason
        self._accepting = False
        self._has_room.unpark_all()

    def _cancel(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    def _fail(self, reason: CloseReason) -> None:
        """End the link abruptly: nothing more is written or read."""
        self._end(reason)
        self._receiving = False
        self._outbox.clear()
        self._cancel()
        self._drained.unpark_all()

    # --- sending --------------------------------------------------------------------------

    def send_nowait(self, message: Message) -> bool:
        """Queue ``message``; never waits. Returns False if it was not queued.

        Unlike a trio channel's ``send_nowait`` this does not raise WouldBlock: a full outbox
        means the peer is not reading, so the link is closed as overloaded (and False
        returned). False is also returned, silently, once the link is closing or closed:
        an answer to a peer that has left has nobody to go to.

        Raises:
            LocalProtocolError: ``message`` is not allowed now (a bug on our side).
        """
        if not self._accepting:
            return False
        if len(self._outbox) >= self._outbox_size:
            self._fail(CloseReason.OVERLOADED)
            return False
        self._queue(message)
        return True

    async def send(self, message: Message) -> None:
        """Queue ``message``, waiting while the outbox is full.

        Raises:
            trio.ClosedResourceError: the link is closing or closed.
            LocalProtocolError: ``message`` is not allowed now (a bug on our side).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while self._accepting and len(self._outbox) >= self._outbox_size:
            await self._has_room.park()
        if not self._accepting:
            raise trio.ClosedResourceError("the link is closed")
        self._queue(message)

    def _queue(self, message: Message) -> None:
        data = self.conn.send(message)  # LocalProtocolError leaves everything unchanged
        self._outbox.append(data)
        farewell = isinstance(message, Goodbye | Error)
        flusher = self._flusher
        if flusher is not None and flusher.running and not farewell:
            flusher.mark(self)
        else:
            self._has_outbox.unpark()
        if farewell:
            self._end(
                CloseReason.GOODBYE_SENT if isinstance(message, Goodbye) else CloseReason.ERROR_SENT
            )
            self._farewell_queued = True

    def _stream_unsent(self) -> bool:
        """Whether the stream holds bytes a write without waiting left (see Flusher)."""
        return self._flusher is not None and bool(self.stream.unsent)  # type: ignore[attr-defined]

    def _take_chunks(self) -> tuple[bytes, int]:
        """What is queued, up to ``write_size`` bytes (at least one message), as one piece;
        and how many messages."""
        outbox = self._outbox
        chunks = [outbox.popleft()]
        size = len(chunks[0])
        while outbox and size + len(outbox[0]) <= self._write_size:
            chunk = outbox.popleft()
            chunks.append(chunk)
            size += len(chunk)
        self._has_room.unpark(count=len(chunks))
        return (b"".join(chunks) if len(chunks) > 1 else chunks[0]), len(chunks)

    def _write_now(self) -> None:
        """The flusher's turn: write what is queued without waiting; what the stream cannot
        take now is left to the sender task."""
        if (self._writing or not self._outbox or self._farewell_queued or self._closed
                or (self._scope is not None and self._scope.cancel_called)):
            if self._outbox:
                self._has_outbox.unpark()
            return
        while self._outbox:
            data, count = self._take_chunks()
            try:
                written = self.stream.send_nowait(data)  # type: ignore[attr-defined]
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._fail(CloseReason.PEER_LOST)
                return
            self._writes += 1
            self._messages_sent += count
            self._bytes_sent += len(data)
            if not written:
                break
        self._last_sent = trio.current_time()
        if self._outbox or self._stream_unsent():
            self._has_outbox.unpark()  # the sender waits for the socket to take the rest
        else:
            self._drained.unpark_all()

    async def _send_loop(self) -> None:
        outbox = self._outbox
        stream = self.stream
        while True:
            while not outbox and not self._stream_unsent():
                if self._farewell_queued:
                    # Our Goodbye/Error is written: we send nothing more, and need not read.
                    self._fail(self._close_reason or CloseReason.GOODBYE_SENT)
                    return
                self._drained.unpark_all()
                await self._has_outbox.park()
            if self._scope is not None and self._scope.cancel_called:
                return  # ended while we were being woken: write nothing more
            data, count = self._take_chunks() if outbox else (b"", 0)
            size = len(data)
            self._writing = True
            self._write_started = trio.current_time()
            try:
                await stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._writing = False
                self._fail(CloseReason.PEER_LOST)
                return
            self._writing = False
            self._last_sent = trio.current_time()
            if self._timing_write:
                # The watchdog sleeps towards this write's stall deadline: wake it so that
                # it times the next heartbeat from now. Otherwise it sleeps towards a
                # heartbeat or silence deadline this write can only move later, and finds
                # that out when it wakes (a wake-up per heartbeat, not one per write).
                self._retimed.unpark_all()
            if count:
                self._writes += 1
                self._messages_sent += count
                self._bytes_sent += size

    # --- receiving ------------------------------------------------------------------------

    def __aiter__(self) -> Link:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def receive(self) -> Message:
        """Return the peer's next message (Heartbeats are consumed here).

        The peer's Goodbye or Error is returned, and is the last message.

        Raises:
            trio.EndOfChannel: the peer has left, the stream ended or broke, or the peer broke
                the protocol (an Error has been queued in answer; see :attr:`remote_error`).
                :attr:`close_reason` says which.
        """
        conn = self.conn
        while True:
            if not self._receiving:
                await trio.lowlevel.checkpoint()
                raise trio.EndOfChannel
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                self._answer_violation(exc)
                continue
            if event is NEED_DATA:
                # The silence is counted while we wait, not while the caller handles what
                # came: one timestamp per read, which the watchdog checks.
                self._waiting_since = trio.current_time()
                self._reading = True
                try:
                    data = await self.stream.receive_some(self._receive_size)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._stop_receiving(CloseReason.PEER_LOST)
                    continue
                finally:
                    self._reading = False
                self._bytes_received += len(data)
                conn.receive_data(data)
                continue
            if event is CLOSED:
                self._stop_receiving(CloseReason.PEER_CLOSED)
                continue
            self._messages_received += 1
            if type(event) is Heartbeat:
                continue
            if isinstance(event, Goodbye | Error):
                self.farewell = event
                self._stop_receiving(
                    CloseReason.PEER_GOODBYE
                    if isinstance(event, Goodbye)
                    else CloseReason.PEER_ERROR
                )
            # A cancel point only: a batch of buffered messages is returned without a trip
            # through the scheduler for each (the handler's own awaits are schedule points).
            await trio.lowlevel.checkpoint_if_cancelled()
            return event

    def _stop_receiving(self, reason: CloseReason) -> None:
        self._end(reason)
        self._receiving = False

    def _answer_violation(self, exc: RemoteProtocolError) -> None:
        """Answer the peer's protocol error with Error; the link then closes."""
        self.remote_error = exc
        accepting = self._accepting
        self._stop_receiving(CloseReason.PROTOCOL_ERROR)
        if accepting:
            # conn.send accepts Error after a remote error. The outbox bound does not apply:
            # this is the last message.
            self._queue(Error(exc.code, str(exc)[:_ERROR_TEXT_LIMIT]))

    # --- time -----------------------------------------------------------------------------

    def _heartbeat_allowed(self) -> bool:
        return Heartbeat in TRANSITIONS[self.conn.our_role][self.conn.our_state]

    async def _watchdog(self) -> None:
        """Send heartbeats when idle; drop a silent or stuck peer. One timer per link."""
        while True:
            interval = self._heartbeat
            if interval is None:
                await self._retimed.park()
                continue
            now = trio.current_time()
            silence = interval * self._missed
            # Without a reader waiting, nobody is owed anything: check again an interval on.
            dead_at = self._waiting_since + silence if self._reading else now + interval
            if now >= dead_at:
                self._fail(CloseReason.PEER_SILENT)
                return
            if self._writing:
                stalled_at = self._write_started + silence
                if now >= stalled_at:
                    self._fail(CloseReason.PEER_STALLED)
                    return
                wake = min(dead_at, stalled_at)
            elif self._outbox:
                wake = min(dead_at, now + interval)  # the sender is about to write
            else:
                beat_at = self._last_sent + interval
                if now >= beat_at:
                    if self._accepting and self._heartbeat_allowed():
                        self._queue(Heartbeat())
                        self._heartbeats_sent += 1
                    # Not allowed yet (before Welcome): count the interval from now.
                    self._last_sent = now
                    beat_at = now + interval
                wake = min(dead_at, beat_at)
            self._timing_write = self._writing
            with trio.move_on_at(wake):
                await self._retimed.park()


class Flusher:
    """Writes the queued messages of many links from one task: a link whose stream can
    write without waiting (``send_nowait``, as :class:`~transport.tls_stream.TLSStream`)
    and that was given this flusher is marked when a message is queued, and the flusher,
    woken once for all that were marked, writes each link's messages at once. So answering
    a batch that touched fifty links wakes one task, not fifty, and each link's answers
    still leave as one write. What a socket does not take at once is left to that link's
    sender task, as are a link's last message (Goodbye, Error) and everything a link
    queues while the flusher is not running. Run :meth:`run` in a nursery."""

    def __init__(self) -> None:
        self._marked: dict[Link, None] = {}
        self._woken = trio.lowlevel.ParkingLot()
        self.running = False
        self.wakeups = 0

    def mark(self, link: Link) -> None:
        if not self._marked:
            self._woken.unpark()
        self._marked[link] = None

    async def run(self) -> None:
        self.running = True
        try:
            while True:
                while not self._marked:
                    await self._woken.park()
                self.wakeups += 1
                marked, self._marked = self._marked, {}
                for link in marked:
                    link._write_now()
        finally:
            self.running = False
            for link in self._marked:  # left to their senders
                link._has_outbox.unpark()
            self._marked = {}


def _check_interval(interval: float | None) -> None:
    if interval is not None and not interval > 0:
        raise ValueError("heartbeat must be a positive number of seconds or None")
