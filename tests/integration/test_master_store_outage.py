"""A store that cannot be written (issue 9, section 4: a full disk) does not stop the master.

The failure is injected where a full disk shows itself: the recorder's insert raises the
"database or disk is full" error SQLite gives, for as long as a test keeps the disk full.
Nothing is acknowledged that is not durable: Acquires are refused with ``store_unavailable``,
Releases answered not-released; sessions stay open; the master retries by itself and serves
again once the store can be written.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from eventsourcing.persistence import OperationalError

from ledger import LedgerApp, ManualClock
from seatledger.master.server import trio_now
from seatledger.master.session import Sessions
from seatledger.master.settings import MasterSettings
from seatledger.master.writer import Writer
from seatledger.slave.connector import SeatRefusedError, SlaveConnector
from tests.conftest import START
from tests.integration.test_master_session import Site
from tests.integration.test_wire import FAST, World
from transport import PROTOCOL_VERSION, Acquire, Error, Granted, Hello, Refused, Release, Released

RETRY = 5.0
SETTINGS = MasterSettings(heartbeat_interval=10, missed_heartbeats=3, worker_thread=False,
                          store_retry_interval=RETRY)


class FullDisk:
    """While ``full``, every commit to ``ledger``'s store fails as on a full disk."""

    def __init__(self, ledger: LedgerApp, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        self.failed_commits = 0
        insert = ledger.recorder.insert_events

        def insert_events(*args: Any, **kwargs: Any) -> Any:
            if self.full:
                self.failed_commits += 1
                raise OperationalError("database or disk is full")
            return insert(*args, **kwargs)

        monkeypatch.setattr(ledger.recorder, "insert_events", insert_events)


# --- one session, in memory, on MockClock -------------------------------------------------


@pytest.fixture
async def writer(ledger: LedgerApp, clock: ManualClock) -> AsyncIterator[Writer]:
    writer = Writer(ledger, clock, trio_now(START), max_batch=100, queue_size=100,
                    worker_thread=False, after_batch=lambda outcomes: None,
                    retry_interval=RETRY)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        yield writer
        nursery.cancel_scope.cancel()


@pytest.fixture
def disk(ledger: LedgerApp, monkeypatch: pytest.MonkeyPatch) -> FullDisk:
    return FullDisk(ledger, monkeypatch)


@pytest.fixture
def sessions(ledger: LedgerApp, writer: Writer) -> Sessions:
    return Sessions(ledger, writer, SETTINGS)


@pytest.fixture
def north(sessions: Sessions, nursery: trio.Nursery) -> Iterator[Site]:
    ours, theirs = trio.testing.memory_stream_pair()
    site = Site(theirs, "north")

    async def serve() -> None:
        await sessions.serve(ours, "north")
        site.ended.set()

    nursery.start_soon(serve)
    yield site


async def test_a_full_disk_refuses_grants_keeps_the_session_and_recovers_by_itself(
        ledger: LedgerApp, writer: Writer, disk: FullDisk, north: Site,
        caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock) -> None:
    await north.connect()
    await north.send(Acquire(1, "alice", "PRED"))
    assert isinstance(await north.receive(), Granted)

    disk.full = True
    with caplog.at_level(logging.CRITICAL, logger="seatledger.master"):
        await north.send(Acquire(2, "bob", "PRED"))
        refused = await north.receive()
    assert isinstance(refused, Refused) and refused.reason == "store_unavailable"
    assert "disk is full" in refused.detail
    assert any("ALERT" in r.getMessage() for r in caplog.records)
    assert not writer.available and writer.statistics()["store_outages"] == 1
    # A release is not recorded either, so the seat is still held: answered not-released.
    await north.send(Release(3, "alice"))
    assert await north.receive() == Released(3, "alice", False, "store_unavailable")
    assert set(ledger.licence.sites["north"].seats) == {"alice"}

    disk.full = False
    failed = disk.failed_commits
    # Until the retry interval has passed, requests are refused at once, without trying.
    await north.send(Acquire(4, "carol", "PRED"))
    refused = await north.receive()
    assert isinstance(refused, Refused) and refused.reason == "store_unavailable"
    assert disk.failed_commits == failed
    await trio.sleep(RETRY)
    await north.send(Acquire(5, "carol", "PRED"))
    granted = await north.receive()
    assert isinstance(granted, Granted) and granted.request_id == 5
    assert writer.available and writer.statistics()["store_outages"] == 1
    assert not north.ended.is_set()  # the same session all along
    assert set(ledger.licence.sites["north"].seats) == {"alice", "carol"}
    names = [type(e).__name__ for _, e in ledger.events()]
    assert names.count("SeatGranted") == 2 and "SeatReleased" not in names


async def test_a_site_saying_hello_while_the_disk_is_full_is_told_so(
        ledger: LedgerApp, disk: FullDisk, north: Site,
        autojump_clock: trio.testing.MockClock) -> None:
    disk.full = True
    await north.send(Hello("north", PROTOCOL_VERSION))
    error = await north.receive()
    assert isinstance(error, Error) and error.code == "store_unavailable"
    with trio.fail_after(5):
        await north.ended.wait()
    assert ledger.licence.sites["north"].status == "new"


# --- the whole master, over TLS -------------------------------------------------------------


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = World(tmp_path / "master")
    w.enrol("north", PRED=40)
    w.enrol("south", PRED=40)
    yield w
    w.app.close()


async def test_the_master_keeps_running_through_a_full_disk(
        world: World, nursery: trio.Nursery, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    disk = FullDisk(world.app, monkeypatch)
    await world.start_master(nursery, store_retry_interval=0.2)
    master = world.master
    assert master is not None
    async with SlaveConnector(world.bundle("north"), tmp_path / "n", settings=FAST) as north:
        await north.wait_online()
        south = SlaveConnector(world.bundle("south"), tmp_path / "s", settings=FAST)
        async with south:
            await south.wait_online()
            disk.full = True
            with pytest.raises(SeatRefusedError) as refused:
                await north.acquire("alice", "PRED")
            assert refused.value.reason == "store_unavailable"
        # South left while its departure could not be recorded.
        assert world.app.licence.sites["south"].status == "connected"
        await trio.sleep(0.3)
        disk.full = False
        await trio.sleep(0.3)
        with trio.fail_after(5):
            assert (await north.acquire("alice", "PRED")).status == "normal"
        assert not master.stopped.is_set()
        assert master.statistics()["sessions"] == 1
        # Once the store is back, the master records the departure it missed.
        with trio.fail_after(5):
            while world.app.licence.sites["south"].status == "connected":
                await trio.sleep(0.01)
    assert master.statistics()["store_outages"] == 1
