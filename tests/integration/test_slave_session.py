"""The slave's session with a master over the transport shell, on trio's clock: heartbeats
keep an idle session up for hours, and a master that stops answering is noticed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from seatledger.master.server import trio_now
from seatledger.slave.connector import ONLINE, SlaveConnector, SlaveSettings
from tests.integration.test_wire import START, World


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = World(tmp_path / "master")
    w.enrol("north", PRED=40, ACD=10)
    yield w
    w.app.close()


async def test_an_idle_session_stays_up_for_hours_on_heartbeats(
        world: World, nursery: trio.Nursery, tmp_path: Path,
        autojump_clock: trio.testing.MockClock) -> None:
    await world.start_master(nursery)  # heartbeats every 10 s, 3 missed drop the peer
    async with SlaveConnector(world.bundle("north"), tmp_path / "n",
                              settings=SlaveSettings(), now=trio_now(START)) as north:
        await north.wait_online()
        await trio.sleep(3 * 3600)
        assert north.state == ONLINE and len(north.synced) == 1
        assert (await north.acquire("late", "PRED")).status == "normal"
        kinds = [type(e).__name__ for _, e in world.app.events() if "Site" in type(e).__name__]
        assert kinds == ["SiteEnrolled", "SiteConnected"]  # never dropped, never back


async def test_a_journal_of_several_sync_chunks_is_delivered_and_trimmed(
        world: World, nursery: trio.Nursery, tmp_path: Path,
        autojump_clock: trio.testing.MockClock) -> None:
    await world.start_master(nursery)
    port = world.port
    users = [(f"p{i}", "PRED") for i in range(40)] + [(f"a{i}", "ACD") for i in range(10)]
    async with SlaveConnector(world.bundle("north"), tmp_path / "n", settings=SlaveSettings(),
                              now=trio_now(START)) as north:
        await north.wait_online()
        world.stop_master()
        await trio.sleep(1)
        for _round in range(12):
            for user, cls in users:
                assert (await north.acquire(user, cls)).status == "offline"
            for user, _cls in users:
                await north.release(user)
        for user, cls in users[:7]:
            await north.acquire(user, cls)
        pending = north.journal.count()
        assert pending == 12 * 100 + 7  # three Sync chunks of at most 500 events
        await world.start_master(nursery, port)
        await north.wait_online()
        assert north.journal.count() == 0
        applied, skipped, _reconciled = north.synced[-1]
        assert (applied, skipped) == (pending, 0)
    assert set(world.app.licence.sites["north"].seats) == {u for u, _ in users[:7]}
