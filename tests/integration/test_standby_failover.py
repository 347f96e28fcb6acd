"""A hot standby on the real PostgreSQL, with real master processes and real TLS: two
masters share one ledger, slaves name both; the active one is SIGKILLed under load, the
standby takes over, the slaves follow, and every acknowledged grant is in the ledger once,
the seal verifies and the read models agree. The failover time is measured (and reported by
``benchmarks/failover.py``, which runs this harness for more rounds).

The helpers here are the harness; the tests below and the benchmark share them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import IO, Any

import attrs
import trio

from seatledger.config.bundle import Bundle
from seatledger.config.settings import load_config
from seatledger.config.store import open_ledger
from seatledger.master.lease import read_lease
from seatledger.services.datadir import init_data_dir
from seatledger.services.sites import enrol_site
from seatledger.slave.connector import ONLINE, SlaveConnector, SlaveSettings
from seatledger.slave.errors import SeatRefusedError
from seatledger.slave.link import Answer, MasterLink
from tests.integration.test_crash import free_port
from tests.processes import die_with_parent
from transport import Acquire, Granted, Release

ROUNDS = int(os.environ.get("SEATLEDGER_FAILOVER_ROUNDS", "2"))
SITES = ("north", "south")
HA = "\n[ha]\nlease_seconds = 5\nrenew_seconds = 1\npoll_seconds = 0.25\n"
SLAVE_SETTINGS = SlaveSettings(retry_interval=1.0, connect_timeout=3.0, answer_timeout=2.0,
                               standby_retry=0.2)

class MasterProcess:
    """A real ``seatledger master`` process; its stdout lines are collected as they come."""

    def __init__(self, root: Path, port: int, *extra: str):
        self.root = root
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.log: IO[bytes] = open(root.parent / f"{root.name}-master.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "seatledger.cli", "master", "--data-dir", str(root),
             "--listen", self.address, *extra],
            stdout=subprocess.PIPE, stderr=self.log, preexec_fn=die_with_parent)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.decode().strip())

    def count(self, word: str) -> int:
        return sum(1 for line in self.lines if line.startswith(f"seatledger master {word}"))

    async def wait_for(self, word: str, times: int = 1, timeout: float = 30.0) -> None:
        """Wait until the master has said ``seatledger master WORD`` ``times`` times."""
        with trio.fail_after(timeout):
            while self.count(word) < times:
                if self.proc.poll() is not None:
                    raise AssertionError(f"master {self.address} exited {self.proc.returncode}: "
                                         f"{self.stderr()}")
                await trio.sleep(0.02)

    def stderr(self) -> str:
        self.log.flush()
        return (self.root.parent / f"{self.root.name}-master.log").read_text()[-3000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()

    def terminate(self) -> int:
        """SIGTERM (a clean stop); its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.log.close()
        return code


@attrs.define
class Pair:
    """Two data directories (the second a copy of the first's keys, CA and checkpoint) on
    one PostgreSQL ledger, and the sites' bundles naming both masters."""

    roots: tuple[Path, Path]
    ports: tuple[int, int]
    bundles: dict[str, Bundle]
    url: str

    def address(self, i: int) -> str:
        return f"127.0.0.1:{self.ports[i]}"


def prepare_pair(tmp: Path, pg_url: str, ha: str = HA) -> Pair:
    first, second = tmp / "a", tmp / "b"
    init_data_dir(first, store_url=pg_url, history=False)
    config = load_config(first)
    ports = (free_port(), free_port())
    bundles = {}
    with open_ledger(config) as app:
        app.issue_licence(customer="Acme", limits={"PRED": 100_000, "ACD": 100})
        for site in SITES:
            path = enrol_site(config, app, site, local_limits={"PRED": 100_000},
                              master=f"127.0.0.1:{ports[0]}", secondary=f"127.0.0.1:{ports[1]}",
                              output=tmp / f"{site}.bundle")
            bundles[site] = Bundle.read(path)
    # The standby host's data directory: the same keys, CA and configuration (docs/standby.md).
    shutil.copytree(first, second, ignore=shutil.ignore_patterns("run"), symlinks=True)
    for root in (first, second):
        with open(root / "seatledger.toml", "a", encoding="utf-8") as f:
            f.write(ha)
    return Pair((first, second), ports, bundles, pg_url)


class RecordingSlave(SlaveConnector):
    """A slave connector that notes each grant a master served it: (trio time, master)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.served: list[tuple[float, str]] = []

    async def _request(self, link: MasterLink, message: Acquire | Release) -> Answer:
        answer = await super()._request(link, message)
        if isinstance(answer, Granted):
            self.served.append((trio.current_time(), link.address))
        return answer


@attrs.define
class Load:
    acknowledged: set[tuple[str, str]] = attrs.Factory(set)
    refused: Counter[str] = attrs.Factory(Counter)
    stop: trio.Event = attrs.Factory(trio.Event)


async def seat_load(slave: RecordingSlave, prefix: str, load: Load) -> None:
    """Acquire seats for fresh users, paced, until told to stop; note every grant the
    dialler was given (by the master, or by the offline rules while there was none)."""
    n = 0
    while not load.stop.is_set():
        n += 1
        user = f"{prefix}-{n}"
        try:
            await slave.acquire(user, "PRED")
        except SeatRefusedError as e:
            load.refused[e.reason] += 1
        else:
            load.acknowledged.add((slave.bundle.site, user))
        await trio.sleep(0.01)


async def wait_served_by(slaves: list[RecordingSlave], address: str, after: float,
                         timeout: float = 30.0) -> float:
    """The trio time of the first grant ``address`` served after ``after``."""
    with trio.fail_after(timeout):
        while True:
            times = [t for s in slaves for t, a in s.served if a == address and t > after]
            if times:
                return min(times)
            await trio.sleep(0.005)


async def run_failover(tmp: Path, pg_url: str, rounds: int) -> dict[str, Any]:
    """Two masters, the slaves under load; SIGKILL the active one ``rounds`` times
    (restarting it as the standby each time); then check the ledger. Returns the
    measurements and what was checked."""
    pair = prepare_pair(tmp, pg_url)
    masters: list[MasterProcess | None] = [None, None]
    failovers: list[float] = []
    load = Load()
    try:
        masters[0] = MasterProcess(pair.roots[0], pair.ports[0])
        await masters[0].wait_for("serving")
        masters[1] = MasterProcess(pair.roots[1], pair.ports[1])
        await masters[1].wait_for("standby")
        active = 0
        async with AsyncExitStack() as stack:
            slaves: list[RecordingSlave] = []
            for site in SITES:
                slave = RecordingSlave(pair.bundles[site], tmp / f"slave-{site}",
                                       settings=SLAVE_SETTINGS)
                await stack.enter_async_context(slave)
                slaves.append(slave)
            with trio.fail_after(30):  # the load starts on line (the offline rules need
                for slave in slaves:   # the local limits a first session brings)
                    await slave.wait_online()
            async with trio.open_nursery() as nursery:
                for slave in slaves:
                    nursery.start_soon(seat_load, slave, slave.bundle.site, load)
                try:
                    for _ in range(rounds):
                        failovers.append(await _kill_the_active(pair, masters, active, slaves))
                        active = 1 - active
                    # Every slave back with the active master, under load.
                    start = trio.current_time()
                    for slave in slaves:
                        await wait_served_by([slave], pair.address(active), start)
                finally:
                    load.stop.set()
            # Every journal delivered (what was decided offline during a failover).
            with trio.fail_after(30):
                while not all(s.state is ONLINE and not s.journal.count() for s in slaves):
                    await trio.sleep(0.05)
            held = {s.bundle.site: set(s.seats()) for s in slaves}
            synced = [list(s.synced) for s in slaves]
        config = load_config(pair.roots[active])
        status = await _status_settled(pair.roots[active])
        lease = read_lease(pg_url)
    finally:
        for m in masters:
            if m is not None:
                m.kill()
    return {"pair": pair, "active": active, "failovers": failovers, "load": load,
            "held": held, "synced": synced, "config": config, "status": status, "lease": lease}


async def _kill_the_active(pair: Pair, masters: list[MasterProcess | None], active: int,
                           slaves: list[RecordingSlave]) -> float:
    """SIGKILL the active master under load; the seconds until the other served a grant.
    The killed one is restarted, as the standby."""
    victim = masters[active]
    assert victim is not None
    start = trio.current_time()  # under load: every slave served by the active just now
    for slave in slaves:
        await wait_served_by([slave], pair.address(active), start)
    await trio.sleep(0.5)
    killed_at = trio.current_time()
    os.kill(victim.proc.pid, signal.SIGKILL)
    survivor = 1 - active
    served = await wait_served_by(slaves, pair.address(survivor), killed_at)
    survivor_process = masters[survivor]
    assert survivor_process is not None and survivor_process.count("serving") >= 1
    victim.kill()
    restarted = MasterProcess(pair.roots[active], pair.ports[active])
    masters[active] = restarted
    await restarted.wait_for("standby")
    return served - killed_at


async def _status_settled(root: Path) -> dict[str, Any]:
    """``seatledger status --json`` once the read models (the active master's follower, on
    PostgreSQL) stop moving."""
    readings: list[int] = []
    document: dict[str, Any] = {}
    with trio.move_on_after(60):
        while len(readings) < 3 or len(set(readings[-3:])) > 1:
            await trio.sleep(0.5)
            proc = await trio.run_process(
                [sys.executable, "-m", "seatledger.cli", "status", "--json", "--data-dir",
                 str(root)], capture_stdout=True, capture_stderr=True, check=False)
            if proc.returncode == 0:
                document = json.loads(proc.stdout)
                readings.append(next(p["in_use"] for p in document["status"]["pools"]
                                     if p["pool"] == "PRED"))
    return document


def check_ledger(result: dict[str, Any]) -> dict[str, int]:
    """Every acknowledged grant is in the ledger, once; the ledger's seats are the slaves'."""
    pair: Pair = result["pair"]
    with open_ledger(result["config"], read_only=True) as app:
        licence = app.replay()
        grants = Counter((e.site, e.user) for _, e in app.events()
                         if type(e).__name__ == "SeatGranted")
        report = app.verify()
    assert licence is not None
    assert report.ok, report.problem
    doubled = [k for k, n in grants.items() if n > 1]
    assert not doubled, f"granted more than once: {doubled[:5]}"
    missing = result["load"].acknowledged - set(grants)
    assert not missing, f"{len(missing)} acknowledged grants are not in the ledger: {sorted(missing)[:5]}"
    for site, seats in result["held"].items():
        assert set(licence.sites[site].seats) == seats, site
    in_use = sum(len(licence.sites[s].seats) for s in SITES)
    assert licence.pools["PRED"].in_use == in_use
    for root in pair.roots:  # either host's checkpoint file (one lags) confirms the chain
        proc = subprocess.run([sys.executable, "-m", "seatledger.cli", "audit", "verify",
                               "--data-dir", str(root)], capture_output=True, text=True)
        assert proc.returncode == 0, (root.name, proc.stdout, proc.stderr)
    return {"grants": len(grants), "acknowledged": len(result["load"].acknowledged),
            "in_use": in_use}


async def test_sigkill_of_the_active_master_under_load_fails_over(tmp_path: Path,
                                                                   pg_url: str) -> None:
    result = await run_failover(tmp_path, pg_url, ROUNDS)
    counts = check_ledger(result)
    assert counts["acknowledged"] > 100, "the load never got going"
    assert len(result["failovers"]) == ROUNDS
    assert max(result["failovers"]) <= 10.0, result["failovers"]
    # Each new active continued the ledger: the term grew once per takeover.
    lease = result["lease"]
    assert lease is not None and lease.term == ROUNDS + 1
    assert lease.holder.startswith(f"{os.uname().nodename} {result['pair'].address(result['active'])}")
    # Each slave synced once per session: the first, then once after each failover at most
    # twice (a journal that grew during a sync is delivered by one more session).
    assert all(len(s) >= ROUNDS + 1 for s in result["synced"]), result["synced"]
    # The read models followed on PostgreSQL: the status agrees with the ledger.
    status = result["status"]
    pred = next(p["in_use"] for p in status["status"]["pools"] if p["pool"] == "PRED")
    assert pred == counts["in_use"]
    assert status["active_master"]["term"] == ROUNDS + 1


def admin_ping(root: Path) -> dict[str, Any]:
    from transport.local_socket import request

    return request(root / "run" / "admin.sock", {"op": "ping"}, timeout=10)


async def test_a_paused_active_that_wakes_after_the_takeover_commits_nothing(
        tmp_path: Path, pg_url: str) -> None:
    from transport import NEED_DATA, Connection, Hello, Role, Sync, SyncDone, Welcome
    from transport.tls import client_context

    pair = prepare_pair(tmp_path, pg_url,
                        ha="\n[ha]\nlease_seconds = 2\nrenew_seconds = 0.5\npoll_seconds = 0.1\n")
    first = MasterProcess(pair.roots[0], pair.ports[0])
    second: MasterProcess | None = None
    try:
        await first.wait_for("serving")
        second = MasterProcess(pair.roots[1], pair.ports[1])
        await second.wait_for("standby")
        bundle = pair.bundles["north"]
        ctx = client_context(bundle.ca_pem.encode(), bundle.cert_pem.encode(),
                             bundle.key_pem.encode())
        tcp = await trio.open_tcp_stream("127.0.0.1", pair.ports[0])
        stream = trio.SSLStream(tcp, ctx, server_hostname="127.0.0.1")
        conn = Connection(Role.CLIENT)
        await stream.send_all(conn.send(Hello("north", 1)))

        async def next_event() -> object:
            while (event := conn.next_event()) is NEED_DATA:
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:  # closed without a TLS close_notify
                    return None
                if not data:
                    return None
                conn.receive_data(data)
            return event

        assert isinstance(await next_event(), Welcome)
        await stream.send_all(conn.send(Sync((), (), False)))
        while not isinstance(await next_event(), SyncDone):
            pass

        first.proc.send_signal(signal.SIGSTOP)
        await second.wait_for("serving", timeout=20)
        # Requests reach the paused master's socket; it reads them only when it wakes.
        await stream.send_all(b"".join(conn.send(Acquire(i, f"paused-{i}", "PRED"))
                                       for i in range(1, 6)))
        first.proc.send_signal(signal.SIGCONT)
        await first.wait_for("standby", times=2, timeout=20)  # it stepped down
        answers: list[object] = []
        with trio.move_on_after(3):
            while (event := await next_event()) is not None:
                answers.append(event)
        assert not any(isinstance(a, Granted) for a in answers), answers
        assert first.proc.poll() is None
        ping = await trio.to_thread.run_sync(admin_ping, pair.roots[0])
        assert ping["role"] == "standby" and pair.address(1) in ping["active"], ping
        refused = await trio.run_process(
            [sys.executable, "-m", "seatledger.cli", "site", "list", "--data-dir",
             str(pair.roots[0])], capture_stdout=True, capture_stderr=True, check=False)
        lines = refused.stderr.decode().strip().splitlines()
        assert refused.returncode == 1 and len(lines) == 1, refused.stderr
        assert "standby" in lines[0] and pair.address(1) in lines[0], lines
        lease = read_lease(pg_url)
        assert lease is not None and lease.term == 2 and pair.address(1) in lease.holder
    finally:
        first.kill()
        if second is not None:
            second.kill()
    with open_ledger(load_config(pair.roots[1]), read_only=True) as app:
        users = {e.user for _, e in app.events() if type(e).__name__ == "SeatGranted"}
        report = app.verify()
    assert not {u for u in users if u.startswith("paused-")}, users
    assert report.ok, report.problem


async def test_masters_started_at_once_elect_exactly_one(tmp_path: Path, pg_url: str) -> None:
    pair = prepare_pair(tmp_path, pg_url)
    masters = [MasterProcess(root, port) for root, port in zip(pair.roots, pair.ports,
                                                               strict=True)]
    try:
        with trio.fail_after(30):
            while not any(m.count("serving") for m in masters):
                await trio.sleep(0.05)
        await trio.sleep(6)  # longer than a lease: the other never takes it
        serving = [m for m in masters if m.count("serving")]
        assert len(serving) == 1, [m.lines for m in masters]
        assert all(m.count("standby") == 1 and m.proc.poll() is None for m in masters), \
            [(m.lines, m.proc.poll(), m.stderr()) for m in masters]
        lease = read_lease(pair.url)
        assert lease is not None and lease.term == 1 and serving[0].address in lease.holder
        proc = await trio.run_process(
            [sys.executable, "-m", "seatledger.cli", "status", "--data-dir",
             str(pair.roots[0])], capture_stdout=True, capture_stderr=True, check=False)
        out = proc.stdout.decode()
        assert proc.returncode == 0, proc.stderr
        assert f"active master: {lease.holder} since " in out and "(term 1)" in out, out
    finally:
        for m in masters:
            m.kill()


async def test_a_forced_standby_never_takes_the_lease(tmp_path: Path, pg_url: str) -> None:
    pair = prepare_pair(tmp_path, pg_url,
                        ha="\n[ha]\nlease_seconds = 2\nrenew_seconds = 0.5\npoll_seconds = 0.1\n")
    forced = MasterProcess(pair.roots[0], pair.ports[0], "--standby")
    other: MasterProcess | None = None
    try:
        await forced.wait_for("standby")
        await trio.sleep(3)
        assert forced.count("serving") == 0
        assert read_lease(pair.url) is not None and read_lease(pair.url).term == 0  # type: ignore[union-attr]
        other = MasterProcess(pair.roots[1], pair.ports[1])
        await other.wait_for("serving")
        # A site whose primary is the standby is told so and tries its secondary at once
        # (not after its retry interval of five minutes).
        slave = SlaveConnector(pair.bundles["north"], tmp_path / "slave",
                               settings=SlaveSettings(retry_interval=300.0))
        async with slave:
            with trio.fail_after(5):
                await slave.wait_online()
            assert slave.connected_to == other.address and slave.failed_rounds == 0
            answer = await slave.acquire("u1", "PRED")
            assert answer.seat
        # On a third host with no master running, operator commands refuse too: the
        # lease names the active master, which is the writer.
        third = tmp_path / "c"
        shutil.copytree(pair.roots[0], third, ignore=shutil.ignore_patterns("run"))
        site_list = [sys.executable, "-m", "seatledger.cli", "site", "list", "--data-dir",
                     str(third)]
        refused = await trio.run_process(site_list, capture_stdout=True, capture_stderr=True,
                                         check=False)
        lines = refused.stderr.decode().strip().splitlines()
        assert refused.returncode == 1 and len(lines) == 1, refused.stderr
        assert f"the active master is {_holder(pair.url)}" in lines[0], lines
        assert other.terminate() == 0  # a clean stop releases the lease...
        other = None
        await trio.sleep(3)
        assert forced.count("serving") == 0  # ...which a forced standby leaves alone
        listed = await trio.run_process(site_list, capture_stdout=True, capture_stderr=True,
                                        check=False)
        assert listed.returncode == 0, listed.stderr  # no active master: the lock suffices
    finally:
        forced.kill()
        if other is not None:
            other.kill()


def _holder(url: str) -> str:
    lease = read_lease(url)
    assert lease is not None
    return lease.holder


def test_standby_needs_a_postgresql_store(tmp_path: Path) -> None:
    root = tmp_path / "data"
    init_data_dir(root, history=True)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "seatledger.cli", "master", "--standby",
                           "--data-dir", str(root), "--listen", f"127.0.0.1:{free_port()}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "PostgreSQL" in lines[0], proc.stderr
    assert time.monotonic() - started < 60
