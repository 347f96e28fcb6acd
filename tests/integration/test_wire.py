"""The master and slave connectors over real mutual-TLS sockets on 127.0.0.1, on trio's clock."""

from __future__ import annotations

import itertools
import shutil
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from ledger import LedgerApp, ManualClock
from seatledger.bootstrap import master_context
from seatledger.config.bundle import Bundle
from seatledger.config.settings import Config, load_config
from seatledger.config.store import open_ledger
from seatledger.master.server import Master, MasterSettings, trio_now
from seatledger.services.datadir import init_data_dir
from seatledger.services.sites import enrol_site
from seatledger.slave.connector import (
    CUT_OFF,
    OFFLINE,
    ONLINE,
    SeatRefusedError,
    SlaveConnector,
    SlaveSettings,
)
from seatledger.slave.journal import Journal
from transport import (
    DEFAULT_MAX_PENDING,
    NEED_DATA,
    PROTOCOL_VERSION,
    Acquire,
    Connection,
    Error,
    Granted,
    Heartbeat,
    Hello,
    Message,
    Refused,
    Release,
    Role,
    Sentinel,
    Sync,
    SyncDone,
    Welcome,
)
from transport.tls import client_context

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
FAST = SlaveSettings(retry_interval=300, cutoff_attempts=3, cutoff_retry=900, demo_limit=5)


class World:
    """A data directory, its ledger, a running master, and the sites' bundles."""

    def __init__(self, root: Path):
        self.root = root
        init_data_dir(root, history=False)
        self.config: Config = load_config(root)
        self.clock = ManualClock(START)
        self.app: LedgerApp = open_ledger(self.config, clock=self.clock)
        self.app.issue_licence(customer="Acme", limits={"PRED": 100, "ACD": 20})
        self.bundles: dict[str, Bundle] = {}
        self.master: Master | None = None
        self.port = 0
        self.scope: trio.CancelScope | None = None

    def enrol(self, name: str, **limits: int) -> Bundle:
        path = enrol_site(self.config, self.app, name, local_limits=limits,
                          master="127.0.0.1:1", output=self.root / f"{name}.bundle")
        self.bundles[name] = Bundle.read(path)
        return self.bundles[name]

    def bundle(self, name: str) -> Bundle:
        b = self.bundles[name]
        return Bundle(b.site, b.ca_pem, b.cert_pem, b.key_pem, f"127.0.0.1:{self.port}", None)

    async def start_master(self, nursery: trio.Nursery, port: int = 0, *,
                           upstream: Any = None, **settings: Any) -> None:
        """Start a master on ``port``; ``settings`` override MasterSettings fields;
        ``upstream``: a chained master's connector to its upstream."""
        # On MockClock the commit runs inline: a worker thread looks idle to the clock.
        threaded = not isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)
        self.master = Master(self.app, self.clock, master_context(self.config, self.app),
                             settings=MasterSettings(heartbeat_interval=10, missed_heartbeats=3,
                                                     worker_thread=threaded,
                                                     refresh_interval=600,
                                                     origin=self.config.origin, **settings),
                             now=trio_now(START), upstream=upstream)
        self.scope = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
            assert self.master is not None and self.scope is not None
            with self.scope:
                await self.master.run("127.0.0.1", port, task_status=task_status)

        listeners = await nursery.start(run)
        self.port = listeners[0].socket.getsockname()[1]

    def stop_master(self) -> None:
        assert self.scope is not None
        self.scope.cancel()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = World(tmp_path / "master")
    w.enrol("north", PRED=40, ACD=10)
    w.enrol("south", PRED=40)
    yield w
    w.app.close()


async def test_grants_and_releases_over_mutual_tls(world: World, nursery: trio.Nursery,
                                                   tmp_path: Path) -> None:
    await world.start_master(nursery)
    async with SlaveConnector(world.bundle("north"), tmp_path / "north", settings=FAST) as north:
        await north.wait_online()
        seat = await north.acquire("alice", "PRED", tenant="acme", campaign="sales")
        assert seat.status == "normal"
        again = await north.acquire("alice", "PRED")
        assert again.seat == seat.seat
        await north.release("alice")
        with pytest.raises(SeatRefusedError) as refused:
            await north.release("alice")
        assert refused.value.reason == "unknown_seat"
    names = [type(e).__name__ for _, e in world.app.events()]
    assert names.count("SeatGranted") == 1 and names.count("SeatReleased") == 1
    assert "SiteConnected" in names


async def test_a_site_cannot_release_another_sites_seat(world: World, nursery: trio.Nursery,
                                                        tmp_path: Path) -> None:
    await world.start_master(nursery)
    async with SlaveConnector(world.bundle("north"), tmp_path / "n", settings=FAST) as north, \
            SlaveConnector(world.bundle("south"), tmp_path / "s", settings=FAST) as south:
        await north.wait_online()
        await south.wait_online()
        await north.acquire("alice", "PRED")
        # South has no local seat for alice, and the master keys seats by (site, user):
        # a forged Release from south's link is refused and north's seat stays.
        link = south._link
        assert link is not None
        answer = await south._request(link, Release(999, "alice"))
        assert answer.ok is False and answer.reason == "unknown_seat"
        assert "alice" in world.app.licence.sites["north"].seats


async def test_hello_naming_another_site_is_refused(world: World, nursery: trio.Nursery) -> None:
    await world.start_master(nursery)
    stream = await _connect(world, "north")
    conn = Connection(Role.CLIENT)
    await stream.send_all(conn.send(Hello("south", PROTOCOL_VERSION)))
    data = await stream.receive_some(65536)
    conn.receive_data(data)
    event = conn.next_event()
    assert isinstance(event, Error) and event.code == "identity_mismatch"
    await trio.aclose_forcefully(stream)
    assert world.app.licence.sites["south"].status == "new"


async def test_a_bad_frame_closes_only_that_connection(world: World, nursery: trio.Nursery,
                                                       tmp_path: Path) -> None:
    await world.start_master(nursery)
    async with SlaveConnector(world.bundle("north"), tmp_path / "n", settings=FAST) as north:
        await north.wait_online()
        stream = await _connect(world, "south")
        before = world.app.max_id()
        await stream.send_all(b"\x00\x00\x00\x05\x01garbage-that-is-not-msgpack")
        reply = await stream.receive_some(65536)
        conn = Connection(Role.CLIENT)
        conn.receive_data(reply)
        assert isinstance(conn.next_event(), Error)
        await trio.aclose_forcefully(stream)
        assert world.app.max_id() == before  # nothing from a bad frame reached the ledger
        seat = await north.acquire("bob", "PRED")  # the others carry on
        assert seat.status == "normal"


async def test_offline_grants_arrive_once_and_cutoff_timing_holds(
        world: World, nursery: trio.Nursery, tmp_path: Path,
        autojump_clock: trio.testing.MockClock) -> None:
    await world.start_master(nursery)
    port = world.port
    async with SlaveConnector(world.bundle("north"), tmp_path / "n", settings=FAST,
                              now=trio_now(START)) as north:
        await north.wait_online()
        await north.acquire("a1", "PRED")
        world.stop_master()
        await trio.sleep(1)
        # Offline: within the local limit (PRED=40), journalled.
        offline = await north.acquire("a2", "PRED")
        assert offline.status == "offline" and north.state == OFFLINE
        await north.release("a1")
        # Three failed rounds, five minutes apart: cut off after about 15 minutes.
        await trio.sleep(14 * 60)
        assert north.state == OFFLINE
        await trio.sleep(2 * 60)
        assert north.state == CUT_OFF
        for i in range(5):
            assert (await north.acquire(f"d{i}", "PRED")).status == "demo"
        with pytest.raises(SeatRefusedError) as refused:
            await north.acquire("d5", "PRED")
        assert refused.value.reason == "cut_off"
        await world.start_master(nursery, port)
        await north.wait_online()
        assert north.state == ONLINE
    seats = world.app.licence.sites["north"].seats
    assert set(seats) == {f"d{i}" for i in range(5)}
    grants = [e for _, e in world.app.events() if type(e).__name__ == "SeatGranted"]
    assert sum(1 for g in grants if g.user == "a2") == 1
    assert all(g.offline for g in grants if g.user.startswith("d"))


async def test_redelivered_journal_is_recorded_once(world: World, nursery: trio.Nursery,
                                                    tmp_path: Path) -> None:
    await world.start_master(nursery)
    port = world.port
    state = tmp_path / "n"
    async with SlaveConnector(world.bundle("north"), state, settings=FAST) as north:
        await north.wait_online()
        world.stop_master()
        await trio.sleep(0.2)
        for i in range(3):
            await north.acquire(f"o{i}", "PRED")
    # Replay the same journal twice (as after a drop mid-sync): the master's per-site
    # sequence numbers make the second delivery a no-op.
    journal = Journal(state / "journal.db")
    entries = journal.pending()
    journal.close()
    assert len(entries) == 3
    await world.start_master(nursery, port)
    for _ in range(2):
        shadow = tmp_path / f"copy{_}"
        shadow.mkdir()
        shutil.copy(state / "journal.db", shadow / "journal.db")
        async with SlaveConnector(world.bundle("north"), shadow, settings=FAST) as again:
            await again.wait_online()
    grants = [e for _, e in world.app.events() if type(e).__name__ == "SeatGranted"]
    assert sorted(g.user for g in grants) == ["o0", "o1", "o2"]
    assert all(g.offline and g.seq for g in grants)


async def test_notices_reach_connected_sites(world: World, nursery: trio.Nursery, tmp_path: Path,
                                             autojump_clock: trio.testing.MockClock) -> None:
    world.app.amend_licence(limits={"PRED": 100, "ACD": 1})
    await world.start_master(nursery)
    async with SlaveConnector(world.bundle("north"), tmp_path / "n", settings=FAST,
                              now=trio_now(START)) as north:
        await north.wait_online()
        await north.acquire("x1", "ACD")
        over = await north.acquire("x2", "ACD")
        assert over.status == "overuse" and over.deadline is not None
        await trio.sleep(48 * 3600 + 60)
        severities = [a.severity for a in north.alerts]
        assert severities[:1] == ["info"] and "warning" in severities
        assert "urgent" in severities and "critical" in severities
        with pytest.raises(SeatRefusedError) as refused:
            await north.acquire("x3", "ACD")
        assert refused.value.reason == "limit_enforced"
    assert world.app.licence.pools["ACD"].enforced
    assert world.app.licence.pools["ACD"].deadline is None


async def _connect(world: World, site: str, *,
                   receive_buffer: int | None = None) -> trio.SSLStream[Any]:
    """A TLS stream to the master with ``site``'s certificate, handshake done.
    ``receive_buffer`` shrinks the socket's receive buffer (a site that reads slowly)."""
    b = world.bundle(site)
    ctx = client_context(b.ca_pem.encode(), b.cert_pem.encode(), b.key_pem.encode())
    tcp = await trio.open_tcp_stream("127.0.0.1", world.port)
    if receive_buffer is not None:
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    stream = trio.SSLStream(tcp, ctx, server_hostname="127.0.0.1")
    await stream.do_handshake()
    return stream


async def _handshake(world: World, site: str, *, max_pending: int = DEFAULT_MAX_PENDING,
                     receive_buffer: int | None = None
                     ) -> tuple[trio.SSLStream[Any], Connection]:
    """A raw client connection, through Hello, Welcome, Sync and SyncDone."""
    stream = await _connect(world, site, receive_buffer=receive_buffer)
    conn = Connection(Role.CLIENT, max_pending=max_pending)
    await stream.send_all(conn.send(Hello(site, PROTOCOL_VERSION)))
    for expected, reply in ((Welcome, Sync((), (), False)), (SyncDone, None)):
        event = await _read(stream, conn)
        assert isinstance(event, expected), event
        if reply is not None:
            await stream.send_all(conn.send(reply))
    return stream, conn


async def _read(stream: trio.SSLStream[Any], conn: Connection) -> Message | Sentinel:
    """The next message other than a heartbeat, or CLOSED."""
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif not isinstance(event, Heartbeat):
            return event


async def test_a_silent_site_is_dropped_after_missed_heartbeats(
        world: World, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    await world.start_master(nursery)
    stream, _conn = await _handshake(world, "north")
    assert world.app.licence.sites["north"].status == "connected"
    await trio.sleep(29)  # 3 missed beats of 10 s: not yet
    assert world.app.licence.sites["north"].status == "connected"
    await trio.sleep(5)
    assert world.app.licence.sites["north"].status == "disconnected"
    dropped = [e for _, e in world.app.events() if type(e).__name__ == "SiteDisconnected"]
    assert dropped[-1].reason == "connection lost"
    await trio.aclose_forcefully(stream)


FLOOD_QUEUE = 64  # the master's request queue in the flood tests: far below what a site sends
# The master's own connection allows DEFAULT_MAX_PENDING outstanding requests per site; the
# flooder stays just under it, so it is served (slowly), not dropped as a protocol violator.
FLOOD_OUTSTANDING = DEFAULT_MAX_PENDING - 96
GOOD_SITE_BOUND = 1.0  # seconds: generous, so that only starvation fails the test


async def _wait_queue_full(world: World) -> None:
    """Return once the master's request queue is full (the flood is really on)."""
    assert world.master is not None
    with trio.fail_after(5):
        while world.master.statistics()["queued"] < FLOOD_QUEUE:
            await trio.sleep(0.0005)


async def _write_flood(stream: trio.SSLStream[Any], conn: Connection, outstanding: int) -> None:
    """Write Acquire frames back to back, never waiting for an answer, keeping up to
    ``outstanding`` requests unanswered."""
    ids = itertools.count(1)
    while True:
        room = outstanding - conn.pending_requests
        if room < 100:
            await trio.sleep(0.001)
            continue
        await stream.send_all(b"".join(conn.send(Acquire(i, f"u{i}", "PRED"))
                                       for i in itertools.islice(ids, min(room, 500))))


async def _acquire_within_bound(world: World, north: SlaveConnector, count: int, *,
                                against_a_full_queue: bool) -> None:
    for i in range(count):
        if against_a_full_queue:
            await _wait_queue_full(world)
        with trio.fail_after(GOOD_SITE_BOUND):
            assert (await north.acquire(f"n{i}", "PRED")).status == "normal"


async def test_a_site_flooding_past_the_queue_does_not_starve_another(
        world: World, nursery: trio.Nursery, tmp_path: Path) -> None:
    world.app.amend_licence(limits={"PRED": 20000, "ACD": 20})
    await world.start_master(nursery, queue_size=FLOOD_QUEUE)
    flooder, conn = await _handshake(world, "south", max_pending=FLOOD_OUTSTANDING)
    answered = 0

    async def read_answers() -> None:
        nonlocal answered
        while True:
            event = await _read(flooder, conn)
            if not isinstance(event, Granted | Refused):
                pytest.fail(f"the flooding site got {event!r}: it should be served, not dropped")
            answered += 1

    async with trio.open_nursery() as flood:
        flood.start_soon(_write_flood, flooder, conn, FLOOD_OUTSTANDING)
        flood.start_soon(read_answers)
        async with SlaveConnector(world.bundle("north"), tmp_path / "n", settings=FAST) as north:
            await north.wait_online()
            await _acquire_within_bound(world, north, 20, against_a_full_queue=True)
        # The flood was on all along: far more outstanding than the queue holds, and south
        # was served too (more slowly), not dropped.
        assert conn.pending_requests > FLOOD_QUEUE
        assert answered > FLOOD_QUEUE
        assert world.master is not None and world.master.statistics()["sessions"] >= 1
        assert world.app.licence.sites["south"].status == "connected"
        flood.cancel_scope.cancel()
    await trio.aclose_forcefully(flooder)


async def test_a_site_that_does_not_read_is_dropped_and_others_are_served(
        world: World, nursery: trio.Nursery, tmp_path: Path) -> None:
    world.app.amend_licence(limits={"PRED": 20000, "ACD": 20})
    await world.start_master(nursery, queue_size=FLOOD_QUEUE, outbox_size=64)
    stuck, conn = await _handshake(world, "south", max_pending=10**9, receive_buffer=4096)
    async with trio.open_nursery() as flood:
        # South never reads an answer; once the master's writes to it block and its outbox
        # fills, the master drops it. The flood ends when the master closes the stream.
        async def write_until_dropped() -> None:
            with pytest.raises(trio.BrokenResourceError):
                await _write_flood(stuck, conn, 10**9)

        flood.start_soon(write_until_dropped)
        async with SlaveConnector(world.bundle("north"), tmp_path / "n", settings=FAST) as north:
            await north.wait_online()
            await _acquire_within_bound(world, north, 5, against_a_full_queue=False)
            with trio.fail_after(30):
                while world.app.licence.sites["south"].status == "connected":
                    await trio.sleep(0.01)
            with trio.fail_after(GOOD_SITE_BOUND):
                assert (await north.acquire("after", "PRED")).status == "normal"
    # North's own goodbye may be recorded too, depending on timing: south's is what counts.
    dropped = [e.reason for _, e in world.app.events()
               if type(e).__name__ == "SiteDisconnected" and e.site == "south"]
    assert dropped == ["overloaded"]
    await trio.aclose_forcefully(stuck)


async def test_a_revoked_site_is_refused_at_the_handshake(
        world: World, nursery: trio.Nursery, tmp_path: Path) -> None:
    await world.start_master(nursery)
    world.app.revoke_site("south")
    before = world.app.max_id()
    # TLS 1.3: the client's half of the handshake completes first; the master refuses the
    # revoked certificate inside its half, so the site learns of it on its first read.
    stream = await _connect(world, "south")
    with pytest.raises(trio.BrokenResourceError):
        await _read(stream, Connection(Role.CLIENT))
    await trio.aclose_forcefully(stream)
    assert world.app.max_id() == before  # nothing from a revoked site reached the ledger
    async with SlaveConnector(world.bundle("south"), tmp_path / "s", settings=FAST) as south:
        await trio.sleep(0.5)
        assert south.state in (OFFLINE, CUT_OFF) and south.connected_to is None


async def test_the_slave_falls_back_to_the_secondary_master(
        world: World, nursery: trio.Nursery, tmp_path: Path) -> None:
    await world.start_master(nursery)
    with socket_closed_port() as dead:
        b = world.bundle("north")
        bundle = Bundle(b.site, b.ca_pem, b.cert_pem, b.key_pem, f"127.0.0.1:{dead}",
                        f"127.0.0.1:{world.port}")
        async with SlaveConnector(bundle, tmp_path / "n", settings=FAST) as north:
            with trio.fail_after(10):
                await north.wait_online()
            assert north.connected_to == f"127.0.0.1:{world.port}"
            assert (await north.acquire("alice", "PRED")).status == "normal"


async def test_a_full_journal_refuses_log_ons_after_rising_alerts(
        world: World, nursery: trio.Nursery, tmp_path: Path) -> None:
    await world.start_master(nursery)
    settings = SlaveSettings(journal_cap=10)
    async with SlaveConnector(world.bundle("north"), tmp_path / "n", settings=settings) as north:
        await north.wait_online()
        world.stop_master()
        await trio.sleep(0.3)
        for i in range(10):
            await north.acquire(f"o{i}", "PRED")
        with pytest.raises(SeatRefusedError) as refused:
            await north.acquire("one-too-many", "PRED")
        assert refused.value.reason == "journal_full"
        journal_alerts = [a.severity for a in north.alerts if "journal" in a.text]
        assert journal_alerts == ["warning", "high", "critical", "full"]
        assert north.journal.count() == 10  # nothing lost, nothing beyond the cap


class socket_closed_port:
    """A local port with nothing listening on it."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        pass
