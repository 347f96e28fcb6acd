"""A slave restarted during an outage (issue 9 section 5), against a real master on trio's
clock: it keeps its local limits and its seats, is not cut off at once, keeps counting its
failed rounds, and the releases it makes when it is cut off reach the ledger as
``site_cut_off``, not ``logoff``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from seatledger.master.server import trio_now
from seatledger.slave.connector import CUT_OFF, OFFLINE, SlaveConnector, SlaveSettings
from tests.integration.test_wire import START, World

SETTINGS = SlaveSettings(retry_interval=300, cutoff_attempts=3, cutoff_retry=900, demo_limit=5)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = World(tmp_path / "master")
    w.enrol("north", PRED=40, ACD=10)
    yield w
    w.app.close()


async def _outage_then_restart(world: World, nursery: trio.Nursery, state: Path) -> None:
    """North holds a1 (granted online) and a2 (offline) when it is stopped mid-outage."""
    await world.start_master(nursery)
    async with SlaveConnector(world.bundle("north"), state, settings=SETTINGS,
                              now=trio_now(START)) as north:
        await north.wait_online()
        await north.acquire("a1", "PRED", tenant="acme", campaign="spring")
        world.stop_master()
        await trio.sleep(1)
        assert (await north.acquire("a2", "PRED")).status == "offline"
        assert north.state == OFFLINE


async def test_a_slave_restarted_during_an_outage_is_not_cut_off_at_once(
        world: World, nursery: trio.Nursery, tmp_path: Path,
        autojump_clock: trio.testing.MockClock) -> None:
    state = tmp_path / "north"
    await _outage_then_restart(world, nursery, state)
    async with SlaveConnector(world.bundle("north"), state, settings=SETTINGS,
                              now=trio_now(START)) as again:
        await trio.sleep(1)
        assert again.state == OFFLINE
        assert again.local_limits == {"PRED": 40, "ACD": 10}
        assert set(again.seats()) == {"a1", "a2"}
        assert (await again.acquire("a3", "PRED")).status == "offline"
        assert not [e for e in again.journal.pending() if e.kind == "release"]
        # The outage began before the restart, so its first round counts: two more rounds,
        # five minutes apart, cut it off (not three as for a fresh outage).
        await trio.sleep(9 * 60)
        assert again.state == OFFLINE
        await trio.sleep(2 * 60)
        assert again.state == CUT_OFF
        releases = [e for e in again.journal.pending() if e.kind == "release"]
        assert sorted((e.user, e.reason) for e in releases) == [
            ("a1", "site_cut_off"), ("a2", "site_cut_off"), ("a3", "site_cut_off")]
        assert again.seats() == {}


async def test_a_slave_restarted_while_cut_off_stays_cut_off(
        world: World, nursery: trio.Nursery, tmp_path: Path,
        autojump_clock: trio.testing.MockClock) -> None:
    state = tmp_path / "north"
    await _outage_then_restart(world, nursery, state)
    async with SlaveConnector(world.bundle("north"), state, settings=SETTINGS,
                              now=trio_now(START)) as again:
        await trio.sleep(11 * 60)
        assert again.state == CUT_OFF
    async with SlaveConnector(world.bundle("north"), state, settings=SETTINGS,
                              now=trio_now(START)) as third:
        await trio.sleep(1)
        assert third.state == CUT_OFF
        assert (await third.acquire("d1", "PRED")).status == "demo"
        assert [e.user for e in third.journal.pending() if e.kind == "release"] == \
            ["a1", "a2"]  # dropped once, at the cut-off, not again at this restart


async def test_releases_made_at_cut_off_reach_the_ledger_as_site_cut_off(
        world: World, nursery: trio.Nursery, tmp_path: Path,
        autojump_clock: trio.testing.MockClock) -> None:
    """Needs the ledger's sync to record the reason the slave sends (see the slave's report):
    today it records every journalled release as ``logoff``."""
    state = tmp_path / "north"
    await _outage_then_restart(world, nursery, state)
    async with SlaveConnector(world.bundle("north"), state, settings=SETTINGS,
                              now=trio_now(START)) as again:
        await trio.sleep(11 * 60)
        assert again.state == CUT_OFF
        await again.acquire("d1", "PRED")
        await world.start_master(nursery, world.port)
        await again.wait_online()
    reasons = {e.user: e.reason for _, e in world.app.events()
               if type(e).__name__ == "SeatReleased"}
    assert reasons == {"a1": "site_cut_off", "a2": "site_cut_off"}
    assert set(world.app.licence.sites["north"].seats) == {"d1"}
