"""Connections that never authenticate cannot crowd out a real site (issue 9, section 5).

Raw TCP connections from 127.0.0.2 and up (so that the per-address cap does not touch the
real site on 127.0.0.1) connect and never start their TLS handshake. The master keeps at
most its cap of them, closes the rest at once, and still serves a real site. The bound on
the real site is generous: the figures belong in benchmarks/chaos.py.
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from seatledger.bootstrap import master_context
from seatledger.master.server import Master
from seatledger.slave.connector import SlaveConnector
from tests.integration.test_wire import FAST, World

TOTAL_CAP = 40
PER_ADDRESS_CAP = 8
FLOOD = 300
FLOOD_ADDRESSES = [f"127.0.0.{n}" for n in range(2, 12)]  # 10 addresses, 30 each
REAL_SITE_BOUND = 5.0  # seconds: generous, so that only a locked-out site fails the test


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = World(tmp_path / "master")
    w.enrol("north", PRED=40)
    yield w
    w.app.close()


class Flood:
    """Idle TCP connections to the master, and how many of them the master has closed."""

    def __init__(self) -> None:
        self.connected: list[trio.socket.SocketType] = []
        self.closed = 0

    async def open(self, port: int, count: int) -> None:
        for i in range(count):
            sock = trio.socket.socket()
            await sock.bind((FLOOD_ADDRESSES[i % len(FLOOD_ADDRESSES)], 0))
            try:
                await sock.connect(("127.0.0.1", port))
            except ConnectionResetError:  # refused so fast that connect() saw the reset
                sock.close()
                self.closed += 1
                continue
            self.connected.append(sock)

    async def watch(self, sock: trio.socket.SocketType) -> None:
        """Count the connection once the master closes it (a reset or an EOF)."""
        try:
            data = await sock.recv(1)
        except ConnectionResetError:
            data = b""
        assert data == b"", "the master sent bytes to a connection that never said hello"
        self.closed += 1

    def close(self) -> None:
        for sock in self.connected:
            sock.close()


async def test_unauthenticated_connections_are_capped_and_a_real_site_is_served(
        world: World, nursery: trio.Nursery, tmp_path: Path) -> None:
    await world.start_master(nursery, max_pending_handshakes=TOTAL_CAP,
                             max_pending_handshakes_per_address=PER_ADDRESS_CAP,
                             handshake_timeout=60)
    master = world.master
    assert master is not None
    flood = Flood()
    highest = 0

    async def sample_pending() -> None:
        nonlocal highest
        while True:
            highest = max(highest, master.statistics()["pending_handshakes"])
            await trio.sleep(0.001)

    try:
        async with trio.open_nursery() as watchers:
            watchers.start_soon(sample_pending)
            await flood.open(world.port, FLOOD)
            for sock in flood.connected:
                watchers.start_soon(flood.watch, sock)
            # Beyond the caps, connections are closed at once: all but TOTAL_CAP of them.
            with trio.fail_after(10):
                while flood.closed < FLOOD - TOTAL_CAP:
                    await trio.sleep(0.01)
            stats = master.statistics()
            assert stats["pending_handshakes"] <= TOTAL_CAP
            assert stats["handshakes_refused"] >= FLOOD - len(FLOOD_ADDRESSES) * PER_ADDRESS_CAP

            # The caps are full of idle flooders, and a real site still gets in and is served.
            with trio.fail_after(REAL_SITE_BOUND):
                async with SlaveConnector(world.bundle("north"), tmp_path / "north",
                                          settings=FAST) as north:
                    await north.wait_online()
                    assert (await north.acquire("alice", "PRED")).status == "normal"
            assert master.statistics()["handshakes_evicted"] >= 1
            assert highest <= TOTAL_CAP
            watchers.cancel_scope.cancel()
    finally:
        flood.close()


def _failing_accept(monkeypatch: pytest.MonkeyPatch, error: OSError, times: int) -> list[int]:
    """Make every listener's accept fail ``times`` times with ``error`` first; the returned
    list holds the failures still to come."""
    real_accept = trio.SocketListener.accept
    left = [times]

    async def accept(self: trio.SocketListener) -> trio.SocketStream:
        if left[0]:
            left[0] -= 1
            await trio.lowlevel.checkpoint()
            raise error
        return await real_accept(self)

    monkeypatch.setattr(trio.SocketListener, "accept", accept)
    return left


async def test_the_accept_loop_retries_when_the_system_is_out_of_files(
        world: World, nursery: trio.Nursery, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    left = _failing_accept(monkeypatch, OSError(errno.EMFILE, "Too many open files"), 3)
    await world.start_master(nursery)
    async with SlaveConnector(world.bundle("north"), tmp_path / "north", settings=FAST) as north:
        with trio.fail_after(10):
            await north.wait_online()
    assert left == [0]


async def test_any_other_accept_error_stops_the_master(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    _failing_accept(monkeypatch, OSError(errno.EBADF, "Bad file descriptor"), 1)
    master = Master(world.app, world.clock, master_context(world.config, world.app))
    bad_descriptor = pytest.RaisesExc(OSError, check=lambda e: e.errno == errno.EBADF)
    with trio.fail_after(10), pytest.RaisesGroup(bad_descriptor, flatten_subgroups=True):
        await master.run("127.0.0.1", 0)
    assert master.stopped.is_set()
