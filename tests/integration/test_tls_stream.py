"""The master's TLS stream (transport.tls_stream.TLSStream) over real sockets on 127.0.0.1,
against trio.SSLStream on the site's side; and the Link's flusher writing through it.

The handshake's checks (revocation, refused certificates) are in test_tls_handshake.py,
run with both streams; here: the data after it, the ends of a connection, and writes the
socket does not take at once (small socket buffers, a peer that stops reading).
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import attrs
import pytest
import trio

from transport import (
    NEED_DATA,
    PROTOCOL_VERSION,
    Acquire,
    Connection,
    Granted,
    Hello,
    Notice,
    Role,
    Sync,
    SyncDone,
    Welcome,
    pki,
)
from transport.shell import CloseReason, Flusher, Link
from transport.tls import client_context, server_context
from transport.tls_stream import TLSStream

SMALL_BUFFER = 4096


@attrs.frozen
class Contexts:
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def contexts() -> Contexts:
    ca = pki.create_ca("seatledger stream test CA")
    master = pki.issue_master_certificate(ca)
    site = pki.issue_site_certificate(ca, "paris")
    return Contexts(server_context(ca.cert_pem, master.cert_pem, master.key_pem),
                    client_context(ca.cert_pem, site.cert_pem, site.key_pem))


@attrs.define
class Pair:
    master: TLSStream
    site: trio.SSLStream[trio.SocketStream]


async def _tcp_pair(small_buffers: bool) -> tuple[trio.SocketStream, trio.SocketStream]:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    if small_buffers:  # accepted sockets inherit the listener's buffer sizes
        listener.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    port = listener.socket.getsockname()[1]
    sock = trio.socket.socket()
    if small_buffers:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    await sock.connect(("127.0.0.1", port))
    accepted = await listener.accept()
    await listener.aclose()
    return accepted, trio.SocketStream(sock)


@pytest.fixture
async def connect(contexts: Contexts) -> AsyncIterator[Callable[..., Awaitable[Pair]]]:
    made: list[Pair] = []

    async def make(small_buffers: bool = False) -> Pair:
        server_tcp, client_tcp = await _tcp_pair(small_buffers)
        pair = Pair(TLSStream(server_tcp, contexts.server, server_side=True),
                    trio.SSLStream(client_tcp, contexts.client, server_hostname="127.0.0.1"))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pair.master.do_handshake)
            nursery.start_soon(pair.site.do_handshake)
        made.append(pair)
        return pair

    yield make
    for pair in made:
        await trio.aclose_forcefully(pair.master)
        await trio.aclose_forcefully(pair.site)


async def _receive_exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some(65536)
        assert chunk, f"the stream ended after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


async def test_bytes_travel_both_ways_after_the_handshake(connect: Callable[..., Awaitable[Pair]]
                                                          ) -> None:
    pair = await connect()
    assert pair.master.getpeercert(binary_form=True)  # the site's certificate
    with trio.fail_after(10):
        for n in range(50):
            await pair.site.send_all(b"ask %d" % n)
            assert await pair.master.receive_some() == b"ask %d" % n
            await pair.master.send_all(b"answer %d" % n)
            assert await pair.site.receive_some() == b"answer %d" % n


async def test_what_the_socket_does_not_take_at_once_waits_for_send_all(
        connect: Callable[..., Awaitable[Pair]]) -> None:
    pair = await connect(small_buffers=True)
    payload = bytes(range(256)) * 4096  # 1 MiB, far more than both buffers hold
    assert pair.master.send_nowait(payload) is False
    assert pair.master.unsent
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            received: list[bytes] = []

            async def read() -> None:
                received.append(await _receive_exactly(pair.site, len(payload) + 5))

            nursery.start_soon(read)
            await pair.master.send_all(b"after")  # the queued bytes first, then these
    assert not pair.master.unsent
    assert received == [payload + b"after"]


async def test_a_clean_close_reads_as_the_end_on_both_sides(
        connect: Callable[..., Awaitable[Pair]]) -> None:
    pair = await connect()
    with trio.fail_after(10):
        await pair.site.aclose()  # close_notify
        assert await pair.master.receive_some() == b""
    other = await connect()
    with trio.fail_after(10):
        await other.master.aclose()
        assert await other.site.receive_some() == b""
    with pytest.raises(trio.ClosedResourceError):
        await other.master.receive_some()
    with pytest.raises(trio.ClosedResourceError):
        other.master.send_nowait(b"late")


async def test_an_end_without_close_notify_is_a_broken_stream(
        connect: Callable[..., Awaitable[Pair]]) -> None:
    pair = await connect()
    await pair.site.transport_stream.aclose()  # the TCP connection only, no TLS goodbye
    with trio.fail_after(10), pytest.raises(trio.BrokenResourceError) as caught:
        await pair.master.receive_some()
    assert isinstance(caught.value.__cause__, ssl.SSLError)
    with pytest.raises(trio.BrokenResourceError):  # and it stays broken
        await pair.master.send_all(b"x")


async def test_writing_to_a_peer_that_reset_the_connection_is_a_broken_stream(
        connect: Callable[..., Awaitable[Pair]]) -> None:
    pair = await connect()
    sock = pair.site.transport_stream.socket
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # a reset, not a close: the master's next writes fail (EPIPE/ECONNRESET)
    with trio.fail_after(10), pytest.raises(trio.BrokenResourceError) as caught:
        while True:
            pair.master.send_nowait(b"x" * 65536)
            await trio.sleep(0.01)
    assert isinstance(caught.value.__cause__, OSError)


async def test_garbage_instead_of_tls_records_is_a_broken_stream(
        connect: Callable[..., Awaitable[Pair]]) -> None:
    pair = await connect()
    await pair.site.transport_stream.send_all(b"\x17\x03\x03\x00\x10" + b"not a record....")
    with trio.fail_after(10), pytest.raises(trio.BrokenResourceError) as caught:
        await pair.master.receive_some()
    assert isinstance(caught.value.__cause__, ssl.SSLError)


# --- a Link written by the flusher ----------------------------------------------------------


class Site:
    """The site's end of a link: a bare Connection over trio.SSLStream."""

    def __init__(self, stream: trio.SSLStream[trio.SocketStream]) -> None:
        self.stream = stream
        self.conn = Connection(Role.CLIENT)

    async def send(self, *messages: object) -> None:
        await self.stream.send_all(b"".join(self.conn.send(m) for m in messages))  # type: ignore[arg-type]

    async def receive(self, count: int) -> list[object]:
        got: list[object] = []
        while len(got) < count:
            event = self.conn.next_event()
            if event is NEED_DATA:
                data = await self.stream.receive_some(65536)
                assert data, f"the master closed after {len(got)} messages"
                self.conn.receive_data(data)
                continue
            got.append(event)
        return got


async def _ready(link: Link, site: Site) -> None:
    async with trio.open_nursery() as nursery:

        async def site_side() -> None:
            await site.send(Hello("paris", PROTOCOL_VERSION))
            assert isinstance((await site.receive(1))[0], Welcome)
            await site.send(Sync())
            assert (await site.receive(1))[0] == SyncDone(0, 0, 0)

        nursery.start_soon(site_side)
        assert isinstance(await link.receive(), Hello)
        link.send_nowait(Welcome("paris-1", 30.0))
        assert await link.receive() == Sync()
        link.send_nowait(SyncDone(0, 0, 0))


async def test_the_flusher_writes_a_burst_of_answers_in_few_writes_and_in_order(
        connect: Callable[..., Awaitable[Pair]]) -> None:
    pair = await connect()
    flusher = Flusher()
    site = Site(pair.site)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(flusher.run)
            async with Link(pair.master, Connection(Role.SERVER), heartbeat=30.0,
                            flusher=flusher) as link:
                await _ready(link, site)
                woken = flusher.wakeups
                await site.send(*(Acquire(n, f"u{n}", "PRED") for n in range(1, 301)))
                for n in range(1, 301):
                    message = await link.receive()
                    assert message == Acquire(n, f"u{n}", "PRED")
                    link.send_nowait(Granted(n, str(n)))
                answers = await site.receive(300)
                assert answers == [Granted(n, str(n)) for n in range(1, 301)]
                stats = link.statistics()
            nursery.cancel_scope.cancel()
    assert flusher.wakeups > woken  # the flusher, not the sender task, wrote them
    assert stats.messages_sent >= 302 and stats.writes < 300


async def test_a_site_that_stops_reading_gets_everything_once_it_reads_again(
        connect: Callable[..., Awaitable[Pair]]) -> None:
    pair = await connect(small_buffers=True)
    flusher = Flusher()
    site = Site(pair.site)
    notices = [Notice("overuse", "PRED", "info", text=f"notice {n} " + "x" * 200)
               for n in range(2000)]  # about 0.5 MB against buffers of a few kB
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(flusher.run)
            async with Link(pair.master, Connection(Role.SERVER), heartbeat=30.0,
                            outbox_size=4096, flusher=flusher) as link:
                await _ready(link, site)
                for notice in notices:
                    assert link.send_nowait(notice)
                await trio.sleep(0.2)  # the socket is full: the rest waits in the link
                assert link.statistics().outbox_used > 0 or pair.master.unsent
                assert await site.receive(len(notices)) == notices
                assert link.close_reason is None
            nursery.cancel_scope.cancel()
    assert link.close_reason is CloseReason.LOCAL_CLOSE
