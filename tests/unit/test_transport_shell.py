"""The trio shell (transport.shell.Link) over in-memory streams, with trio's MockClock for time.

The far end is either another Link or a bare sans-IO Connection driven by hand (``RawPeer``),
so a test can send exactly the bytes it wants (garbage, one byte at a time) or stop reading.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

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
    Hello,
    LocalProtocolError,
    Message,
    Notice,
    Role,
    State,
    Sync,
    SyncDone,
    Welcome,
    encode_message,
    frame,
)
from transport.shell import CloseReason, Link

INTERVAL = 10.0
MISSED = 3


class RawPeer:
    """The far end as a bare Connection over a stream: sends and reads exactly what it is told."""

    def __init__(self, stream: trio.abc.Stream, role: Role) -> None:
        self.stream = stream
        self.conn = Connection(role)

    async def send(self, message: Message) -> None:
        await self.stream.send_all(self.conn.send(message))

    async def receive(self) -> Message | None:
        """The next message (Heartbeats included), or None at the end of the stream."""
        while True:
            event = self.conn.next_event()
            if event is NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
                continue
            if event is CLOSED:
                return None
            return event

    async def receive_non_heartbeat(self) -> Message | None:
        while True:
            message = await self.receive()
            if not isinstance(message, Heartbeat):
                return message


async def handshake(link: Link, peer: RawPeer) -> None:
    """Bring a server Link and a raw client peer to READY (the peer in a task of its own, as
    a lockstep stream's writer waits for its reader)."""

    async def site() -> None:
        await peer.send(Hello("acme", PROTOCOL_VERSION))
        assert isinstance(await peer.receive(), Welcome)
        await peer.send(Sync())
        assert await peer.receive() == SyncDone(0, 0, 0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(site)
        assert await link.receive() == Hello("acme", PROTOCOL_VERSION)
        link.send_nowait(Welcome("acme-1", INTERVAL))
        assert await link.receive() == Sync()
        link.send_nowait(SyncDone(0, 0, 0))
    assert link.conn.our_state is State.READY and peer.conn.our_state is State.READY


def server_link(
    stream: trio.abc.Stream, *, heartbeat: float | None = INTERVAL, outbox_size: int = 64
) -> Link:
    return Link(
        stream, Connection(Role.SERVER), heartbeat=heartbeat, missed=MISSED, outbox_size=outbox_size
    )


@pytest.fixture
async def pair() -> AsyncIterator[tuple[trio.abc.Stream, RawPeer]]:
    ours, theirs = trio.testing.memory_stream_pair()
    yield ours, RawPeer(theirs, Role.CLIENT)


def notice(n: int) -> Notice:
    return Notice("overuse", "PRED", "info", text=f"notice {n}")


# --- messages both ways -------------------------------------------------------------------------


async def test_two_links_exchange_a_whole_session_both_ways(autojump_clock: object) -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    master_saw: list[Message] = []
    slave_saw: list[Message] = []

    async def master() -> None:
        async with Link(server_stream, Connection(Role.SERVER), heartbeat=INTERVAL) as link:
            async for message in link:
                master_saw.append(message)
                match message:
                    case Hello():
                        link.send_nowait(Welcome("acme-1", INTERVAL, {"PRED": 2}))
                    case Sync(more=False):
                        link.send_nowait(SyncDone(0, 0, 0))
                    case Acquire(request_id=rid):
                        link.send_nowait(Granted(rid, f"seat-{rid}"))
        assert link.close_reason is CloseReason.PEER_GOODBYE

    async def slave() -> None:
        async with Link(client_stream, Connection(Role.CLIENT)) as link:
            await link.send(Hello("acme", PROTOCOL_VERSION))
            welcome = await link.receive()
            assert isinstance(welcome, Welcome)
            link.heartbeat = welcome.heartbeat_interval
            await link.send(Sync())
            slave_saw.append(welcome)
            slave_saw.append(await link.receive())
            for rid in (1, 2):
                await link.send(Acquire(rid, f"u{rid}", "PRED"))
            slave_saw.append(await link.receive())
            slave_saw.append(await link.receive())
            await link.send(Goodbye("done"))
        assert link.close_reason is CloseReason.GOODBYE_SENT

    async with trio.open_nursery() as nursery:
        nursery.start_soon(master)
        nursery.start_soon(slave)

    assert master_saw == [
        Hello("acme", PROTOCOL_VERSION),
        Sync(),
        Acquire(1, "u1", "PRED"),
        Acquire(2, "u2", "PRED"),
        Goodbye("done"),
    ]
    assert slave_saw == [
        Welcome("acme-1", INTERVAL, {"PRED": 2}),
        SyncDone(0, 0, 0),
        Granted(1, "seat-1"),
        Granted(2, "seat-2"),
    ]


@pytest.mark.parametrize("chunk", [1, 2, 5, 13, 10_000])
async def test_input_split_anywhere_gives_the_same_messages(chunk: int) -> None:
    ours, theirs = trio.testing.lockstep_stream_pair()
    master = RawPeer(theirs, Role.SERVER)
    sent: list[Message] = [Welcome("acme-1", INTERVAL, {"PRED": 3}), notice(1), notice(2)]
    received: list[Message] = []

    async def feed() -> None:
        assert await master.receive() == Hello("acme", PROTOCOL_VERSION)
        data = b"".join(master.conn.send(m) for m in [*sent, Heartbeat()])
        for i in range(0, len(data), chunk):
            await theirs.send_all(data[i : i + chunk])
        await theirs.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed)
        async with Link(ours, Connection(Role.CLIENT)) as link:
            link.send_nowait(Hello("acme", PROTOCOL_VERSION))
            received = [message async for message in link]
    assert received == sent  # the trailing Heartbeat is consumed by the shell
    assert link.statistics().messages_received == 4
    assert link.close_reason is CloseReason.PEER_CLOSED


def _frame_of(message: Message) -> bytes:
    """A message's frame, bypassing the sender's state checks."""
    return frame(encode_message(message))


# --- protocol errors ----------------------------------------------------------------------------


async def test_garbage_frame_is_answered_with_error_and_the_link_closes(
    pair: tuple[trio.abc.Stream, RawPeer],
) -> None:
    ours, peer = pair
    received: list[Message] = []
    async with server_link(ours) as link:
        await peer.stream.send_all(struct.pack(">IB", 3, PROTOCOL_VERSION) + b"\xc1\xc1\xc1")
        received = [message async for message in link]
    assert received == []
    assert link.close_reason is CloseReason.PROTOCOL_ERROR
    assert link.remote_error is not None and link.remote_error.code == "bad_message"
    answer = await peer.receive()
    assert isinstance(answer, Error) and answer.code == "bad_message"
    assert await peer.receive() is None  # then the stream is closed


async def test_out_of_state_message_is_answered_with_error(
    pair: tuple[trio.abc.Stream, RawPeer],
) -> None:
    ours, peer = pair
    async with server_link(ours) as link:
        # An Acquire before Hello: the raw peer's own rules would refuse it, so write it raw.
        await peer.stream.send_all(_frame_of(Acquire(1, "u1", "PRED")))
        assert [message async for message in link] == []
    assert link.close_reason is CloseReason.PROTOCOL_ERROR
    answer = await peer.receive()
    assert isinstance(answer, Error) and answer.code == "out_of_state"


async def test_a_protocol_error_closes_that_link_only(autojump_clock: object) -> None:
    good_ours, good_theirs = trio.testing.memory_stream_pair()
    bad_ours, bad_theirs = trio.testing.memory_stream_pair()
    good, bad = RawPeer(good_theirs, Role.CLIENT), RawPeer(bad_theirs, Role.CLIENT)
    reasons: dict[str, CloseReason | None] = {}

    async def serve(name: str, stream: trio.abc.Stream) -> None:
        async with server_link(stream) as link:
            async for message in link:
                match message:
                    case Hello():
                        link.send_nowait(Welcome(name, INTERVAL))
                    case Sync():
                        link.send_nowait(SyncDone(0, 0, 0))
                    case Acquire(request_id=rid):
                        link.send_nowait(Granted(rid, "seat-1"))
        reasons[name] = link.close_reason

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, "good", good_ours)
        nursery.start_soon(serve, "bad", bad_ours)
        await good.send(Hello("good", PROTOCOL_VERSION))
        assert await good.receive() == Welcome("good", INTERVAL)
        await bad.stream.send_all(b"\x00\x00\x00\x00\x01")  # an empty frame
        reply = await bad.receive()
        assert isinstance(reply, Error) and reply.code == "bad_frame"
        assert await bad.receive() is None
        # The bad link is gone; the good one is still served.
        await good.send(Sync())
        assert await good.receive() == SyncDone(0, 0, 0)
        await good.send(Acquire(1, "u1", "PRED"))
        assert await good.receive() == Granted(1, "seat-1")
        await good.send(Goodbye())
    assert reasons == {"bad": CloseReason.PROTOCOL_ERROR, "good": CloseReason.PEER_GOODBYE}


async def test_sending_out_of_state_raises_local_protocol_error_and_queues_nothing(
    pair: tuple[trio.abc.Stream, RawPeer],
) -> None:
    ours, _peer = pair
    async with server_link(ours) as link:
        with pytest.raises(LocalProtocolError, match="may not send Granted"):
            link.send_nowait(Granted(1, "seat"))
        assert link.statistics().outbox_used == 0
        assert link.close_reason is None


# --- heartbeats ---------------------------------------------------------------------------------


async def test_an_idle_link_sends_heartbeats_every_interval(
    pair: tuple[trio.abc.Stream, RawPeer], autojump_clock: object
) -> None:
    ours, peer = pair
    beats: list[float] = []

    async def site() -> None:
        start = trio.current_time()
        for _ in range(3):
            assert isinstance(await peer.receive(), Heartbeat)
            beats.append(trio.current_time() - start)
            await peer.send(Heartbeat())  # proof of life, or it would be dropped at 30 s
        await peer.send(Goodbye())

    async with server_link(ours) as link:
        await handshake(link, peer)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(site)
            assert [message async for message in link] == [Goodbye()]
        assert link.statistics().heartbeats_sent == 3
    assert link.close_reason is CloseReason.PEER_GOODBYE
    assert beats == pytest.approx([INTERVAL, 2 * INTERVAL, 3 * INTERVAL])


async def test_traffic_postpones_the_heartbeat(
    pair: tuple[trio.abc.Stream, RawPeer], autojump_clock: object
) -> None:
    ours, peer = pair
    async with server_link(ours) as link:
        await handshake(link, peer)
        start = trio.current_time()
        await trio.sleep(6)
        link.send_nowait(notice(1))
        assert await peer.receive() == notice(1)
        assert isinstance(await peer.receive(), Heartbeat)
        assert trio.current_time() - start == pytest.approx(6 + INTERVAL)
        await peer.send(Goodbye())


async def test_no_heartbeat_before_welcome(
    pair: tuple[trio.abc.Stream, RawPeer], autojump_clock: object
) -> None:
    ours, peer = pair
    async with server_link(ours) as link:
        with trio.move_on_after(INTERVAL * MISSED - 1) as quiet:
            await peer.receive()
        assert quiet.cancelled_caught  # nothing at all came in 29 s
        assert link.statistics().heartbeats_sent == 0
        await peer.send(Hello("acme", PROTOCOL_VERSION))
        assert isinstance(await link.receive(), Hello)


async def test_a_silent_peer_is_dropped_after_missed_heartbeats(
    pair: tuple[trio.abc.Stream, RawPeer], autojump_clock: object
) -> None:
    ours, peer = pair
    reached_end_of_loop = False
    async with server_link(ours) as link:
        await handshake(link, peer)
        start = trio.current_time()
        async for _message in link:
            pass
        reached_end_of_loop = True  # not reached: the link's scope cancels the body
    assert link.close_reason is CloseReason.PEER_SILENT
    assert trio.current_time() - start == pytest.approx(INTERVAL * MISSED)
    assert not reached_end_of_loop
    # The peer got our heartbeats, then the end of the stream.
    assert [await peer.receive() for _ in range(3)] == [Heartbeat(), Heartbeat(), None]


async def test_a_peer_that_keeps_beating_is_not_dropped(
    pair: tuple[trio.abc.Stream, RawPeer], autojump_clock: object
) -> None:
    ours, peer = pair

    async def beat() -> None:
        for _ in range(20):
            await trio.sleep(INTERVAL * MISSED - 1)
            await peer.send(Heartbeat())
        await peer.send(Goodbye())

    async with trio.open_nursery() as nursery:
        async with server_link(ours) as link:
            await handshake(link, peer)
            start = trio.current_time()
            nursery.start_soon(beat)
            nursery.start_soon(_drain, peer)
            assert [message async for message in link] == [Goodbye()]
    assert link.close_reason is CloseReason.PEER_GOODBYE
    assert trio.current_time() - start == pytest.approx(20 * (INTERVAL * MISSED - 1))


async def _drain(peer: RawPeer) -> None:
    while await peer.receive() is not None:
        pass


async def test_heartbeat_none_waits_for_the_interval_to_be_set(
    pair: tuple[trio.abc.Stream, RawPeer], autojump_clock: object
) -> None:
    ours, peer = pair
    async with server_link(ours, heartbeat=None) as link:
        await handshake(link, peer)
        await trio.sleep(1000)
        assert link.close_reason is None and link.statistics().heartbeats_sent == 0
        link.heartbeat = 5.0
        start = trio.current_time()
        assert isinstance(await peer.receive(), Heartbeat)
        assert trio.current_time() - start == pytest.approx(5.0)
        await peer.send(Goodbye())


async def test_a_write_stuck_longer_than_the_silence_drops_the_peer(
    autojump_clock: object,
) -> None:
    ours, theirs = trio.testing.lockstep_stream_pair()
    peer = RawPeer(theirs, Role.CLIENT)

    async def keep_beating() -> None:
        while True:
            await trio.sleep(INTERVAL / 2)
            try:
                await peer.send(Heartbeat())
            except trio.BrokenResourceError:  # the link has dropped us
                return

    async with trio.open_nursery() as nursery:
        async with server_link(ours) as link:
            await handshake(link, peer)
            nursery.start_soon(keep_beating)  # it talks, but never reads again
            start = trio.current_time()
            link.send_nowait(notice(1))
            async for _message in link:
                pass
        nursery.cancel_scope.cancel()
    assert link.close_reason is CloseReason.PEER_STALLED
    assert trio.current_time() - start == pytest.approx(INTERVAL * MISSED)


# --- the outbox ---------------------------------------------------------------------------------


async def test_a_full_outbox_drops_the_link_without_blocking_the_sender(
    autojump_clock: object,
) -> None:
    ours, theirs = trio.testing.lockstep_stream_pair()
    peer = RawPeer(theirs, Role.CLIENT)
    queued: list[bool] = []
    async with server_link(ours, outbox_size=4) as link:
        await handshake(link, peer)  # the peer stops reading after this
        start = trio.current_time()
        link.send_nowait(notice(0))
        await trio.testing.wait_all_tasks_blocked()  # the sender is stuck writing it
        for n in range(1, 7):
            queued.append(link.send_nowait(notice(n)))
        assert trio.current_time() == start  # never waited
        assert link.overloaded
        await trio.sleep_forever()  # cancelled by the link: the site is dropped
    assert queued == [True, True, True, True, False, False]
    assert link.close_reason is CloseReason.OVERLOADED
    assert link.statistics().close_reason is CloseReason.OVERLOADED


async def test_an_overloaded_link_does_not_hold_up_another(autojump_clock: object) -> None:
    stuck_ours, stuck_theirs = trio.testing.lockstep_stream_pair()
    fine_ours, fine_theirs = trio.testing.memory_stream_pair()
    stuck, fine = RawPeer(stuck_theirs, Role.CLIENT), RawPeer(fine_theirs, Role.CLIENT)
    links: list[Link] = []

    async def serve(stream: trio.abc.Stream, peer: RawPeer) -> None:
        async with server_link(stream, outbox_size=32) as link:
            await handshake(link, peer)
            links.append(link)
            async for _message in link:
                pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, stuck_ours, stuck)
        nursery.start_soon(serve, fine_ours, fine)
        while len(links) < 2:
            await trio.sleep(0.1)
        start = trio.current_time()
        for n in range(100):  # the writer answers everyone from one task, never waiting
            for link in links:
                link.send_nowait(notice(n))
            if n % 4 == 3:
                await trio.sleep(0)
        assert trio.current_time() == start
        assert [await fine.receive() for _ in range(100)] == [notice(n) for n in range(100)]
        await fine.send(Goodbye())
    reasons = {link.stream: link.close_reason for link in links}
    assert reasons == {stuck_ours: CloseReason.OVERLOADED, fine_ours: CloseReason.PEER_GOODBYE}


async def test_ready_messages_are_coalesced_into_one_write(
    pair: tuple[trio.abc.Stream, RawPeer],
) -> None:
    ours, peer = pair
    async with server_link(ours) as link:
        await handshake(link, peer)
        writes_before = link.statistics().writes
        for n in range(10):
            link.send_nowait(notice(n))
        assert [await peer.receive() for _ in range(10)] == [notice(n) for n in range(10)]
        stats = link.statistics()
        assert stats.writes == writes_before + 1
        assert stats.outbox_used == 0
        await peer.send(Goodbye())


async def test_send_waits_for_room_in_the_outbox(autojump_clock: object) -> None:
    ours, theirs = trio.testing.lockstep_stream_pair()
    peer = RawPeer(theirs, Role.CLIENT)
    async with server_link(ours, outbox_size=1) as link:
        await handshake(link, peer)
        link.send_nowait(notice(0))
        await trio.testing.wait_all_tasks_blocked()  # the sender is stuck writing notice 0
        link.send_nowait(notice(1))  # fills the outbox
        done = trio.Event()

        async def third() -> None:
            await link.send(notice(2))
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(third)
            await trio.sleep(1)
            assert not done.is_set()
            assert [await peer.receive() for _ in range(3)] == [notice(0), notice(1), notice(2)]
            await done.wait()
            nursery.start_soon(peer.send, Goodbye())
            assert await link.receive() == Goodbye()
    assert link.close_reason is CloseReason.PEER_GOODBYE


# --- goodbye and closing ------------------------------------------------------------------------


async def test_peer_goodbye_is_the_last_message_and_ends_iteration(
    pair: tuple[trio.abc.Stream, RawPeer],
) -> None:
    ours, peer = pair
    async with server_link(ours) as link:
        await handshake(link, peer)
        await peer.send(Acquire(1, "u1", "PRED"))
        await peer.send(Goodbye("closing time"))
        assert [message async for message in link] == [
            Acquire(1, "u1", "PRED"),
            Goodbye("closing time"),
        ]
        assert link.farewell == Goodbye("closing time")
        assert link.send_nowait(Granted(1, "seat")) is False  # nobody left to answer
        with pytest.raises(trio.EndOfChannel):
            await link.receive()
    assert link.close_reason is CloseReason.PEER_GOODBYE


async def test_our_goodbye_is_written_then_the_link_closes(
    pair: tuple[trio.abc.Stream, RawPeer],
) -> None:
    ours, peer = pair
    after_goodbye: list[bool] = []
    async with server_link(ours) as link:
        await handshake(link, peer)
        link.send_nowait(notice(1))
        link.send_nowait(Goodbye("master shutting down"))
        after_goodbye.append(link.send_nowait(notice(2)))
        async for _message in link:  # cancelled once the Goodbye is written
            pass
    assert after_goodbye == [False]
    assert link.close_reason is CloseReason.GOODBYE_SENT
    assert [await peer.receive() for _ in range(3)] == [
        notice(1),
        Goodbye("master shutting down"),
        None,
    ]


async def test_leaving_the_block_flushes_the_outbox_then_closes(
    pair: tuple[trio.abc.Stream, RawPeer],
) -> None:
    ours, peer = pair
    async with server_link(ours) as link:
        await handshake(link, peer)
        for n in range(5):
            link.send_nowait(notice(n))
    assert link.close_reason is CloseReason.LOCAL_CLOSE
    assert [await peer.receive() for _ in range(6)] == [notice(n) for n in range(5)] + [None]
    with pytest.raises(trio.ClosedResourceError):
        await link.send(notice(9))


async def test_aclose_from_another_task_flushes_and_ends_the_link(
    pair: tuple[trio.abc.Stream, RawPeer], autojump_clock: object
) -> None:
    ours, peer = pair
    async with trio.open_nursery() as nursery:
        async with server_link(ours) as link:
            await handshake(link, peer)
            link.send_nowait(notice(1))

            async def close_soon() -> None:
                await trio.sleep(1)
                await link.aclose()
                await link.aclose()  # idempotent

            nursery.start_soon(close_soon)
            async for _message in link:
                pass
    assert link.close_reason is CloseReason.LOCAL_CLOSE
    assert [await peer.receive() for _ in range(2)] == [notice(1), None]


async def test_abort_writes_nothing_more(
    autojump_clock: object,
) -> None:
    ours, theirs = trio.testing.lockstep_stream_pair()
    peer = RawPeer(theirs, Role.CLIENT)
    async with server_link(ours) as link:
        await handshake(link, peer)
        link.send_nowait(notice(1))
        link.abort()
        await trio.sleep_forever()
    assert link.close_reason is CloseReason.ABORTED
    assert await peer.receive() is None


async def test_an_exception_in_the_body_propagates_unwrapped_and_closes_the_stream(
    pair: tuple[trio.abc.Stream, RawPeer],
) -> None:
    ours, peer = pair
    with pytest.raises(KeyError, match="boom"):
        async with server_link(ours):
            raise KeyError("boom")
    assert await peer.receive() is None


async def test_a_broken_stream_ends_iteration_as_peer_lost(
    pair: tuple[trio.abc.Stream, RawPeer],
) -> None:
    ours, peer = pair
    async with server_link(ours) as link:
        await handshake(link, peer)
        await trio.aclose_forcefully(peer.stream)
        assert [message async for message in link] == []
    assert link.close_reason is CloseReason.PEER_CLOSED
