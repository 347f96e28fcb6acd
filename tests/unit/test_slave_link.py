"""The slave's session with a master (seatledger.slave.link) over in-memory streams, on trio's
MockClock; the master is a bare sans-IO Connection driven by hand."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from seatledger.slave.errors import LinkLostError, MasterUnreachableError
from seatledger.slave.link import MasterLink, SyncPayload, run_session, sync_messages
from tests.unit.test_transport_shell import RawPeer
from transport import (
    PROTOCOL_VERSION,
    Acquire,
    Error,
    Goodbye,
    Granted,
    Heartbeat,
    HeldSeat,
    Hello,
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
from transport.shell import CloseReason

INTERVAL = 10.0
HELD = (HeldSeat("u1", "PRED", "acme", "spring"),)


def events(count: int) -> tuple[OfflineEvent, ...]:
    return tuple(OfflineEvent(i, "grant", f"u{i}", "PRED", "", "", 1.7e9 + i)
                 for i in range(1, count + 1))


class Session:
    """A slave session under test, and what it handed to the connector."""

    def __init__(self, payload: SyncPayload | None = None) -> None:
        self.payload = payload or SyncPayload()
        self.synced: list[tuple[SyncDone, SyncPayload]] = []
        self.link: MasterLink | None = None
        self.notices: list[Notice] = []
        self.ready = trio.Event()
        self.ended: CloseReason | None = None

    def on_synced(self, link: MasterLink, done: SyncDone, sent: SyncPayload) -> None:
        self.link = link
        self.synced.append((done, sent))
        self.ready.set()

    async def run(self, stream: trio.abc.Stream, *, timeout: float = 10.0) -> None:
        self.ended = await run_session(
            stream, "master:1", "acme", payload=lambda: self.payload,
            on_synced=self.on_synced, on_notice=self.notices.append,
            handshake_timeout=timeout, missed_heartbeats=3, chunk=500)


async def serve_handshake(master: RawPeer, done: SyncDone | None = None,
                          limits: dict[str, int] | None = None) -> list[Sync]:
    """Answer Hello and the Syncs as a master would; returns the Syncs received."""
    assert await master.receive() == Hello("acme", PROTOCOL_VERSION)
    await master.send(Welcome("acme-1", INTERVAL, limits or {"PRED": 3}))
    syncs: list[Sync] = []
    while True:
        message = await master.receive()
        assert isinstance(message, Sync), message
        syncs.append(message)
        if not message.more:
            break
    await master.send(done or SyncDone(0, 0, 0))
    return syncs


async def run_against(master_side: Callable[[RawPeer], Awaitable[None]],
                      session: Session, **run: float) -> None:
    """Run the session against ``master_side``; the session's own error is raised as is."""
    ours, theirs = trio.testing.memory_stream_pair()
    master = RawPeer(theirs, Role.SERVER)
    error: MasterUnreachableError | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(master_side, master)
        try:
            await session.run(ours, **run)
        except MasterUnreachableError as e:
            error = e
        nursery.cancel_scope.cancel()
    if error is not None:
        raise error


def test_a_journal_goes_in_chunks_with_the_held_seats_in_the_last() -> None:
    payload = SyncPayload(events(1203), HELD)
    messages = sync_messages(payload, 500)
    assert [(len(m.events), m.held, m.more) for m in messages] == [
        (500, (), True), (500, (), True), (203, HELD, False)]
    assert tuple(e for m in messages for e in m.events) == payload.events
    assert sync_messages(SyncPayload(), 500) == [Sync((), (), False)]
    assert payload.last_seq == 1203 and SyncPayload().last_seq is None


async def test_the_session_says_hello_syncs_and_hands_over_the_link(
        autojump_clock: trio.testing.MockClock) -> None:
    session = Session(SyncPayload(events(1203), HELD))
    received: list[Sync] = []

    async def master(peer: RawPeer) -> None:
        received.extend(await serve_handshake(peer, SyncDone(1200, 3, 0)))
        await peer.send(Goodbye("maintenance"))

    await run_against(master, session)
    assert [len(s.events) for s in received] == [500, 500, 203] and received[-1].held == HELD
    assert session.synced == [(SyncDone(1200, 3, 0), session.payload)]
    assert session.link is not None and session.link.limits == {"PRED": 3}
    assert session.link.session == "acme-1" and session.link.address == "master:1"
    assert session.ended is CloseReason.PEER_GOODBYE


async def test_a_master_that_refuses_the_hello_is_unreachable(
        autojump_clock: trio.testing.MockClock) -> None:
    async def master(peer: RawPeer) -> None:
        await peer.receive()
        await peer.send(Error("site_revoked", "north was revoked"))

    session = Session()
    with pytest.raises(MasterUnreachableError, match="master refused: site_revoked"):
        await run_against(master, session)
    assert session.synced == []


async def test_a_master_silent_during_the_handshake_is_given_up_on_in_time(
        autojump_clock: trio.testing.MockClock) -> None:
    async def master(peer: RawPeer) -> None:
        await peer.receive()
        await trio.sleep_forever()

    start = trio.current_time()
    with pytest.raises(MasterUnreachableError) as raised:
        await run_against(master, Session(), timeout=5.0)
    assert isinstance(raised.value.__cause__, trio.TooSlowError)
    assert trio.current_time() - start == pytest.approx(5.0)


async def test_a_master_that_closes_during_the_sync_is_unreachable(
        autojump_clock: trio.testing.MockClock) -> None:
    async def master(peer: RawPeer) -> None:
        await peer.receive()
        await peer.send(Welcome("acme-1", INTERVAL))
        await peer.receive()
        await peer.stream.aclose()

    with pytest.raises(MasterUnreachableError, match="closed the connection"):
        await run_against(master, Session())


async def test_answers_reach_their_requests_in_any_order(
        autojump_clock: trio.testing.MockClock) -> None:
    session = Session()
    answers: dict[str, object] = {}

    async def master(peer: RawPeer) -> None:
        await serve_handshake(peer)
        requests = {type(m).__name__: m for m in [await peer.receive_non_heartbeat(),
                                                  await peer.receive_non_heartbeat()]}
        acquire, release = requests["Acquire"], requests["Release"]
        assert isinstance(acquire, Acquire) and isinstance(release, Release)
        # Answered in the other order than asked.
        await peer.send(Released(release.request_id, "u2"))
        await peer.send(Granted(acquire.request_id, "seat-7"))
        await peer.send(Notice("overuse", "PRED", "info", text="over the limit"))
        await peer.send(Goodbye())

    async def ask(name: str, message: Callable[[MasterLink], Acquire | Release]) -> None:
        await session.ready.wait()
        assert session.link is not None
        answers[name] = await session.link.request(message(session.link))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, "acquire", lambda _link: Acquire(1, "u1", "PRED"))
        nursery.start_soon(ask, "release", lambda _link: Release(2, "u2"))
        await run_against(master, session)
    assert answers == {"acquire": Granted(1, "seat-7"), "release": Released(2, "u2")}
    assert [n.text for n in session.notices] == ["over the limit"]


async def test_a_request_on_a_link_that_ends_is_lost(
        autojump_clock: trio.testing.MockClock) -> None:
    session = Session()
    lost: list[str] = []

    async def master(peer: RawPeer) -> None:
        await serve_handshake(peer)
        assert isinstance(await peer.receive_non_heartbeat(), Acquire)
        await peer.stream.aclose()  # never answers

    async def ask() -> None:
        await session.ready.wait()
        assert session.link is not None
        with pytest.raises(LinkLostError):
            await session.link.request(Acquire(1, "u1", "PRED"))
        with pytest.raises(LinkLostError, match="closed"):
            await session.link.request(Acquire(2, "u2", "PRED"))
        lost.append("both")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await run_against(master, session)
    assert lost == ["both"]
    assert session.ended is CloseReason.PEER_CLOSED


async def test_a_refusal_is_an_answer(autojump_clock: trio.testing.MockClock) -> None:
    session = Session()
    answer: list[object] = []

    async def master(peer: RawPeer) -> None:
        await serve_handshake(peer)
        request = await peer.receive_non_heartbeat()
        assert isinstance(request, Acquire)
        await peer.send(Refused(request.request_id, "limit_enforced", "PRED is enforced"))
        await peer.send(Goodbye())

    async def ask() -> None:
        await session.ready.wait()
        assert session.link is not None
        answer.append(await session.link.request(Acquire(1, "u1", "PRED")))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await run_against(master, session)
    assert answer == [Refused(1, "limit_enforced", "PRED is enforced")]


async def test_the_slave_heartbeats_every_interval_from_welcome_on(
        autojump_clock: trio.testing.MockClock) -> None:
    """Fails while transport.shell's watchdog is not woken when a write completes (it then
    sleeps until the stall deadline, 3 intervals on, and misses the beats in between)."""
    session = Session()
    beats: list[float] = []

    async def master(peer: RawPeer) -> None:
        await serve_handshake(peer)
        synced_at = trio.current_time()
        async with trio.open_nursery() as nursery:
            async def keep_talking() -> None:  # so that the slave does not drop us
                while True:
                    await trio.sleep(INTERVAL / 2)
                    await peer.send(Heartbeat())

            nursery.start_soon(keep_talking)
            while len(beats) < 4:
                message = await peer.receive()
                assert isinstance(message, Heartbeat), message
                beats.append(trio.current_time() - synced_at)
            nursery.cancel_scope.cancel()
        await peer.send(Goodbye())

    await run_against(master, session)
    assert beats == pytest.approx([10.0, 20.0, 30.0, 40.0])


class ReclaimingSession(Session):
    """A session whose connector takes Reclaimed (it says so in its Hello)."""

    def __init__(self) -> None:
        super().__init__()
        self.reclaimed: list[Reclaimed] = []

    async def run(self, stream: trio.abc.Stream, *, timeout: float = 10.0) -> None:
        self.ended = await run_session(
            stream, "master:1", "acme", payload=lambda: self.payload,
            on_synced=self.on_synced, on_notice=self.notices.append,
            on_reclaimed=self.reclaimed.append, handshake_timeout=timeout,
            missed_heartbeats=3, chunk=500)


async def test_a_slave_that_takes_reclaimed_says_so_and_gets_each_one(
        autojump_clock: trio.testing.MockClock) -> None:
    session = ReclaimingSession()

    async def master(peer: RawPeer) -> None:
        assert await peer.receive() == Hello("acme", PROTOCOL_VERSION, ("reclaim",))
        await peer.send(Welcome("acme-1", INTERVAL))
        assert isinstance(await peer.receive(), Sync)
        await peer.send(Reclaimed("u1"))  # while the sync is being applied
        await peer.send(SyncDone(0, 0, 0))
        await peer.send(Reclaimed("u2", text="released at the master"))
        await peer.send(Notice("overuse", "PRED", "info", text="over the limit"))
        await peer.send(Goodbye())

    await run_against(master, session)
    assert session.reclaimed == [Reclaimed("u1"), Reclaimed("u2", "operator",
                                                           "released at the master")]
    assert [n.text for n in session.notices] == ["over the limit"]
    assert session.ended is CloseReason.PEER_GOODBYE


async def test_a_slave_that_takes_no_reclaimed_does_not_claim_to(
        autojump_clock: trio.testing.MockClock) -> None:
    hello: list[object] = []

    async def master(peer: RawPeer) -> None:
        hello.append(await peer.receive())
        await peer.send(Goodbye())

    with pytest.raises(MasterUnreachableError):
        await run_against(master, Session())
    assert hello == [Hello("acme", PROTOCOL_VERSION, ())]
