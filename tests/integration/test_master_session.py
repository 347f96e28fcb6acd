"""The master's site session (seatledger.master.session) over in-memory streams, no TLS.

The session runs over one end of ``trio.testing.memory_stream_pair`` (``lockstep_stream_pair``
for a site that stops reading: its writes wait for the reader, so the master's outbox fills);
the far end is a bare sans-IO client Connection that sends exactly what a test says. The
ledger is a real SQLite store in tmp_path (there is no in-memory ledger), driven by trio's
MockClock, so this lives in integration/.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs
import pytest
import trio
import trio.testing

from ledger import LedgerApp, ManualClock
from seatledger.master.server import trio_now
from seatledger.master.session import Sessions
from seatledger.master.settings import MasterSettings
from seatledger.master.writer import Writer
from tests.conftest import START
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
    Message,
    OfflineEvent,
    Refused,
    Release,
    Released,
    Role,
    Sync,
    SyncDone,
    Welcome,
)

Clock = trio.testing.MockClock  # every test runs on autojump (pytest-trio's fixture)
SETTINGS = MasterSettings(heartbeat_interval=10, missed_heartbeats=3, outbox_size=4,
                          worker_thread=False)


class Site:
    """The far end of one session: a bare client Connection over a stream."""

    def __init__(self, stream: trio.abc.Stream, name: str) -> None:
        self.stream = stream
        self.name = name
        self.conn = Connection(Role.CLIENT)
        self.ended = trio.Event()  # set when the master's session has returned

    async def send(self, *messages: Message) -> None:
        await self.stream.send_all(b"".join(self.conn.send(m) for m in messages))

    async def receive(self) -> Message | None:
        """The next message other than a Heartbeat, or None when the master closed."""
        while True:
            event = self.conn.next_event()
            if event is NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
            elif event is CLOSED:
                return None
            elif not isinstance(event, Heartbeat):
                return event

    async def connect(self) -> Welcome:
        await self.send(Hello(self.name, PROTOCOL_VERSION))
        welcome = await self.receive()
        assert isinstance(welcome, Welcome), welcome
        await self.send(Sync())
        assert await self.receive() == SyncDone(0, 0, 0)
        return welcome


@attrs.frozen
class Master:
    ledger: LedgerApp
    writer: Writer
    sessions: Sessions
    nursery: trio.Nursery

    def open(self, name: str, *, lockstep: bool = False) -> Site:
        """Start ``name``'s session over a fresh stream pair; the Site is its far end."""
        pair = trio.testing.lockstep_stream_pair if lockstep else trio.testing.memory_stream_pair
        ours, theirs = pair()
        site = Site(theirs, name)

        async def serve() -> None:
            await self.sessions.serve(ours, name)
            site.ended.set()

        self.nursery.start_soon(serve)
        return site

    def disconnections(self) -> list[tuple[str, str]]:
        return [(e.site, e.reason) for _, e in self.ledger.events()
                if type(e).__name__ == "SiteDisconnected"]


@pytest.fixture
async def master(ledger: LedgerApp, clock: ManualClock) -> AsyncIterator[Master]:
    writer = Writer(ledger, clock, trio_now(START), max_batch=100, queue_size=100,
                    worker_thread=False, after_batch=lambda outcomes: None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        yield Master(ledger, writer, Sessions(ledger, writer, SETTINGS), nursery)
        nursery.cancel_scope.cancel()


async def test_hello_is_answered_welcome_and_the_site_is_connected(
        master: Master, autojump_clock: Clock) -> None:
    master.ledger.enrol_site("east", "", {"PRED": 7})
    east = master.open("east")
    await east.send(Hello("east", PROTOCOL_VERSION))
    assert await east.receive() == Welcome("east-1", 10, {"PRED": 7})
    assert master.ledger.licence.sites["east"].status == "connected"
    assert "east" in master.sessions


async def test_sync_is_answered_sync_done_with_what_it_applied(
        master: Master, autojump_clock: Clock) -> None:
    north = master.open("north")
    await north.send(Hello("north", PROTOCOL_VERSION))
    assert isinstance(await north.receive(), Welcome)
    offline = OfflineEvent(1, "grant", "olga", "PRED", "", "", START.timestamp() + 1)
    held = HeldSeat("olga", "PRED", "", "")
    await north.send(Sync(events=(offline,), more=True), Sync(held=(held,)))
    assert await north.receive() == SyncDone(1, 0, 0)  # applied, none skipped or reconciled
    assert "olga" in master.ledger.licence.sites["north"].seats


async def test_acquire_is_granted_and_release_is_released(
        master: Master, autojump_clock: Clock) -> None:
    north = master.open("north")
    await north.connect()
    await north.send(Acquire(1, "alice", "PRED", "acme", "sales"))
    granted = await north.receive()
    assert isinstance(granted, Granted) and granted.request_id == 1
    assert granted.status == "normal"
    assert "alice" in master.ledger.licence.sites["north"].seats
    await north.send(Release(2, "alice"))
    assert await north.receive() == Released(2, "alice", True, "")
    assert "alice" not in master.ledger.licence.sites["north"].seats
    await north.send(Release(3, "alice"))
    assert await north.receive() == Released(3, "alice", False, "unknown_seat")


async def test_an_acquire_over_the_limit_is_refused(master: Master, autojump_clock: Clock) -> None:
    north = master.open("north")
    await north.connect()
    await north.send(Acquire(1, "alice", "VOICE"))
    refused = await north.receive()
    assert isinstance(refused, Refused) and refused.reason == "class_not_licensed"


async def test_garbage_gets_an_error_and_closes_only_that_session(
        master: Master, autojump_clock: Clock) -> None:
    north, south = master.open("north"), master.open("south")
    await north.connect()
    await south.connect()
    before = master.ledger.max_id()
    await south.stream.send_all(b"\x00\x00\x00\x05\x01garbage-that-is-not-msgpack")
    error = await south.receive()
    assert isinstance(error, Error) and error.code
    assert await south.receive() is None  # and the master closed the stream
    with trio.fail_after(5):
        await south.ended.wait()
    recorded = [type(e).__name__ for _, e in master.ledger.events(before + 1)]
    assert recorded == ["SiteDisconnected"]  # nothing from the bad frame reached the ledger
    assert master.disconnections() == [("south", "connection lost")]
    await north.send(Acquire(1, "bob", "PRED"))  # north carries on
    assert isinstance(await north.receive(), Granted)
    assert list(master.sessions.sites()) == ["north"]


async def test_a_site_that_does_not_read_its_answers_is_dropped_as_overloaded(
        master: Master, autojump_clock: Clock) -> None:
    north = master.open("north", lockstep=True)
    await north.connect()
    # Far more answers than the outbox (4) holds, and north reads none of them.
    await north.send(*(Acquire(i, f"u{i}", "PRED") for i in range(1, 21)))
    with trio.fail_after(5):  # well before the 30 s a stalled write would take
        await north.ended.wait()
    assert master.disconnections() == [("north", "overloaded")]
    assert master.ledger.licence.sites["north"].status == "disconnected"
    assert "north" not in master.sessions


async def test_a_goodbye_is_recorded_as_such(master: Master, autojump_clock: Clock) -> None:
    north = master.open("north")
    await north.connect()
    await north.send(Acquire(1, "alice", "PRED"))
    assert isinstance(await north.receive(), Granted)
    await north.send(Goodbye("shutting down"))
    with trio.fail_after(5):
        await north.ended.wait()
    assert master.disconnections() == [("north", "goodbye")]


async def test_a_revoked_site_gets_an_error_and_its_session_ends(
        master: Master, autojump_clock: Clock) -> None:
    north = master.open("north")
    await north.connect()
    master.ledger.revoke_site("north")
    master.sessions.drop_revoked()
    error = await north.receive()
    assert isinstance(error, Error) and error.code == "revoked"
    with trio.fail_after(5):
        await north.ended.wait()
    assert "north" not in master.sessions


async def test_a_site_reconnecting_replaces_its_session_without_a_disconnection(
        master: Master, autojump_clock: Clock) -> None:
    first = master.open("north")
    await first.connect()
    second = master.open("north")
    welcome = await second.connect()
    assert welcome.session == "north-2"
    with trio.fail_after(5):
        await first.ended.wait()
    assert master.disconnections() == []
    await second.send(Acquire(1, "alice", "PRED"))
    assert isinstance(await second.receive(), Granted)


async def test_a_silent_site_is_dropped_after_its_missed_heartbeats(
        master: Master, autojump_clock: Clock) -> None:
    north = master.open("north")
    await north.connect()  # and then says nothing: no heartbeats either
    await trio.sleep(29)
    assert not north.ended.is_set()
    await trio.sleep(5)
    assert north.ended.is_set()
    assert master.disconnections() == [("north", "connection lost")]
