"""A fault-injecting TCP proxy (trio) between a site and the master.

It forwards bytes both ways and, on command, breaks the link the way networks do:

``cut()``
    Every open connection is reset (``SO_LINGER`` 0, so the peers see a RST, not a clean
    close); new connections are forwarded again at once.
``blackhole()``
    Connections are accepted but nothing moves either way, as on a link that silently drops
    every packet: bytes wait in the socket buffers (TCP would retransmit them), so a link
    that outlives the outage carries on where it stopped.
``delay(seconds)``
    Each chunk is forwarded ``seconds`` after it arrived, in order.
``restore()``
    Back to plain forwarding.

Run it in a nursery: ``proxy = FaultProxy(("127.0.0.1", master_port)); await
nursery.start(proxy.run)``; then point the site's bundle at ``proxy.address``.
"""

from __future__ import annotations

import enum
import socket
import struct

import attrs
import trio

_CHUNK = 65536
_QUEUE = 64  # chunks in flight per direction; the reader waits when the writer is behind
# The errors a forwarding task meets when either end goes away (or is cut).
_LINK_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class Mode(enum.Enum):
    FORWARD = "forward"
    BLACKHOLE = "blackhole"
    DELAY = "delay"


@attrs.frozen
class ProxyStatistics:
    mode: Mode
    delay: float
    accepted: int
    open: int
    cut: int
    bytes_up: int
    bytes_down: int


class _Pair:
    """One proxied connection: the client's stream, the upstream one, and their scope."""

    def __init__(self, client: trio.SocketStream) -> None:
        self.client = client
        self.upstream: trio.SocketStream | None = None
        self.scope = trio.CancelScope()

    def reset(self) -> None:
        """Make the coming close a RST, and end the forwarding."""
        for stream in (self.client, self.upstream):
            if stream is not None:
                _linger_zero(stream)
        self.scope.cancel()


def _linger_zero(stream: trio.SocketStream) -> None:
    try:
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass  # the socket is already closed: nothing left to reset


class FaultProxy:
    """Forward 127.0.0.1:<port> to ``target``, with faults on command (see the module)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._mode = Mode.FORWARD
        self._delay = 0.0
        self._flowing = trio.Event()
        self._flowing.set()
        self._pairs: set[_Pair] = set()
        self._accepted = 0
        self._cut = 0
        self._bytes = {"up": 0, "down": 0}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Listen and forward until cancelled."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = int(listeners[0].socket.getsockname()[1])
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    # --- faults -------------------------------------------------------------------------

    def cut(self) -> int:
        """Reset every open connection; returns how many were cut."""
        pairs = list(self._pairs)
        for pair in pairs:
            pair.reset()
        self._cut += len(pairs)
        return len(pairs)

    def blackhole(self) -> None:
        self._mode = Mode.BLACKHOLE
        if self._flowing.is_set():
            self._flowing = trio.Event()

    def delay(self, seconds: float) -> None:
        self._flowing.set()
        self._mode = Mode.DELAY
        self._delay = seconds

    def restore(self) -> None:
        self._flowing.set()
        self._mode = Mode.FORWARD
        self._delay = 0.0

    def statistics(self) -> ProxyStatistics:
        return ProxyStatistics(self._mode, self._delay, self._accepted, len(self._pairs),
                               self._cut, self._bytes["up"], self._bytes["down"])

    # --- forwarding ---------------------------------------------------------------------

    async def _wait_flowing(self) -> None:
        while not self._flowing.is_set():
            await self._flowing.wait()

    async def _handle(self, client: trio.SocketStream) -> None:
        self._accepted += 1
        pair = _Pair(client)
        self._pairs.add(pair)
        try:
            with pair.scope:
                await self._wait_flowing()  # a blackholed link accepts and says nothing
                try:
                    pair.upstream = await trio.open_tcp_stream(*self.target)
                except OSError:
                    _linger_zero(client)  # the master is down: the site sees a reset
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, client, pair.upstream, "up", nursery)
                    nursery.start_soon(self._pump, pair.upstream, client, "down", nursery)
        finally:
            self._pairs.discard(pair)
            for stream in (pair.upstream, client):
                if stream is not None:
                    with trio.CancelScope(shield=True):
                        await stream.aclose()

    async def _pump(self, src: trio.SocketStream, dst: trio.SocketStream, direction: str,
                    pair_nursery: trio.Nursery) -> None:
        """Copy ``src`` to ``dst`` through a queue that holds each chunk until it is due."""
        send, receive = trio.open_memory_channel[tuple[float, bytes]](_QUEUE)

        async def read() -> None:
            async with send:
                while True:
                    await self._wait_flowing()
                    try:
                        data = await src.receive_some(_CHUNK)
                    except _LINK_ERRORS:
                        return
                    if not data:
                        return
                    await send.send((trio.current_time() + self._delay, data))

        async def write() -> None:
            async with receive:
                async for due, data in receive:
                    await trio.sleep_until(due)
                    await self._wait_flowing()
                    try:
                        await dst.send_all(data)
                    except _LINK_ERRORS:
                        break
                    self._bytes[direction] += len(data)
            # One side has gone: end the whole pair, as a relay in the network would.
            pair_nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            nursery.start_soon(write)
