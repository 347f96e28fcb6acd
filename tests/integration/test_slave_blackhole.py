"""A blackholed link (issue 9 section 5): a relay to the master that keeps accepting and stops
forwarding. An acquire waits at most ``answer_timeout`` for the master, is then granted by the
offline rules and journalled, and once the link is back the master holds that seat once.

Real sockets and real time: the relay, the master and the slave on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from seatledger.config.bundle import Bundle
from seatledger.slave.connector import ONLINE, SlaveConnector, SlaveSettings
from tests.integration.test_wire import World

ANSWER_TIMEOUT = 1.0
SETTINGS = SlaveSettings(retry_interval=0.2, connect_timeout=1.0, answer_timeout=ANSWER_TIMEOUT,
                         cutoff_attempts=1000)
# Generous: the bound is ANSWER_TIMEOUT; this only leaves room for a slow machine.
SLACK = 0.75


class BlackholeRelay:
    """A TCP relay to ``target`` that can stop forwarding, as a blackholed WAN link does.

    While blackholed it still accepts connections, and holds whatever it has read; nothing is
    delivered either way and nothing is refused. Restored, it delivers what it held (TCP would
    retransmit it) and forwards again.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.accepted = 0
        self._open = trio.Event()
        self._open.set()

    def blackhole(self) -> None:
        if self._open.is_set():
            self._open = trio.Event()

    def restore(self) -> None:
        self._open.set()

    async def _wait_open(self) -> None:
        while not self._open.is_set():
            await self._open.wait()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        self.accepted += 1
        try:
            await self._wait_open()
            server = await trio.open_tcp_stream("127.0.0.1", self.target)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pipe, client, server, nursery.cancel_scope)
                    nursery.start_soon(self._pipe, server, client, nursery.cancel_scope)
            finally:
                await trio.aclose_forcefully(server)
        finally:
            await trio.aclose_forcefully(client)

    async def _pipe(self, source: trio.SocketStream, sink: trio.SocketStream,
                    done: trio.CancelScope) -> None:
        try:
            while True:
                await self._wait_open()
                data = await source.receive_some(65536)
                if not data:
                    break
                await self._wait_open()  # read during a blackhole: held until restored
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        done.cancel()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = World(tmp_path / "master")
    w.enrol("north", PRED=40, ACD=10)
    yield w
    w.app.close()


def via(world: World, port: int) -> Bundle:
    """North's bundle, pointing at ``port`` (the relay) instead of the master."""
    b = world.bundles["north"]
    return Bundle(b.site, b.ca_pem, b.cert_pem, b.key_pem, f"127.0.0.1:{port}", None)


def _grants(world: World, user: str) -> int:
    return sum(1 for _, e in world.app.events()
               if type(e).__name__ == "SeatGranted" and e.user == user)


async def _start(world: World, nursery: trio.Nursery) -> BlackholeRelay:
    await world.start_master(nursery)
    relay = BlackholeRelay(world.port)
    await nursery.start(relay.run)
    return relay


async def test_an_acquire_over_a_blackholed_link_is_granted_offline_within_the_bound(
        world: World, nursery: trio.Nursery, tmp_path: Path) -> None:
    relay = await _start(world, nursery)
    async with SlaveConnector(via(world, relay.port), tmp_path / "n", settings=SETTINGS) as north:
        with trio.fail_after(5):
            await north.wait_online()
        assert (await north.acquire("before", "PRED")).status == "normal"

        relay.blackhole()
        start = trio.current_time()
        seat = await north.acquire("alice", "PRED", tenant="acme", campaign="spring")
        waited = trio.current_time() - start
        assert seat.status == "offline"
        assert ANSWER_TIMEOUT - 0.05 <= waited <= ANSWER_TIMEOUT + SLACK
        assert north.state != ONLINE  # the silent master was treated as lost
        assert [e.user for e in north.journal.pending()] == ["alice"]
        # While the link is still down, the next log-on does not wait for the master again.
        start = trio.current_time()
        assert (await north.acquire("bob", "PRED")).status == "offline"
        assert trio.current_time() - start <= ANSWER_TIMEOUT + SLACK

        relay.restore()
        with trio.fail_after(10):
            await north.wait_online()
        # The Acquire held by the relay reaches the master late, on the old connection:
        # give it time to be applied too, then count.
        await trio.sleep(0.5)
        assert north.journal.count() == 0
        seats = world.app.licence.sites["north"].seats
        assert {"before", "alice", "bob"} <= set(seats)
        assert _grants(world, "alice") == 1 and _grants(world, "bob") == 1
        assert set(north.seats()) == {"before", "alice", "bob"}


async def test_a_release_over_a_blackholed_link_is_journalled_within_the_bound(
        world: World, nursery: trio.Nursery, tmp_path: Path) -> None:
    relay = await _start(world, nursery)
    async with SlaveConnector(via(world, relay.port), tmp_path / "n", settings=SETTINGS) as north:
        with trio.fail_after(5):
            await north.wait_online()
        await north.acquire("carol", "PRED")
        relay.blackhole()
        start = trio.current_time()
        await north.release("carol")
        assert trio.current_time() - start <= ANSWER_TIMEOUT + SLACK
        assert "carol" not in north.seats()
        assert [(e.kind, e.user) for e in north.journal.pending()] == [("release", "carol")]
        relay.restore()
        with trio.fail_after(10):
            await north.wait_online()
        await trio.sleep(0.5)
        assert "carol" not in world.app.licence.sites["north"].seats
        releases = [e for _, e in world.app.events()
                    if type(e).__name__ == "SeatReleased" and e.user == "carol"]
        assert len(releases) == 1
