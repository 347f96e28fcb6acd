"""The chaos scenarios (issue 9, section 6), each a function that runs real processes and
returns what it measured: the tests assert on the figures, ``benchmarks/chaos.py`` prints
them with the full counts.

Every scenario kills the processes it started before it returns or raises.
"""

from __future__ import annotations

import collections
import io
import json
import os
import random
import shutil
import signal
import statistics
import sys
import uuid
from collections.abc import Callable, Sequence
from contextlib import redirect_stderr, redirect_stdout
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import trio

from seatledger.cli.main import main as seatledger_main
from tests.chaos.harness import (
    FAKETIME_SHIM,
    MasterProcess,
    SeatLoad,
    SlaveProcess,
    audit_verify,
    cli,
    deploy,
    double_grants,
    faketime_env,
    faketime_library,
    fill_disk,
    first_grant_seconds,
    flood,
    killed_at_exit,
    ledger_view,
)
from tests.chaos.proxy import FaultProxy
from tests.integration.test_one_writer import _operator_commands

SMALL_FS_ENV = "SEATLEDGER_TEST_SMALL_FS"
MB = 1024 * 1024


class MissingEnvironment(Exception):
    """What a scenario needs from the machine is not there (a tool, a small file system)."""


async def _wait_for(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.05) -> float:
    """Wait until ``condition()`` is true; returns the seconds it took. Raises TooSlowError
    naming ``what``."""
    started = trio.current_time()
    with trio.move_on_after(timeout):
        while not condition():
            await trio.sleep(poll)
        return trio.current_time() - started
    raise trio.TooSlowError(f"{what}: not within {timeout:.0f}s")


async def _within(condition: Callable[[], bool], timeout: float, poll: float = 0.05) -> float | None:
    """Seconds until ``condition()`` held, or None if it did not within ``timeout``."""
    try:
        return round(await _wait_for(condition, timeout, "", poll), 2)
    except trio.TooSlowError:
        return None


def _acknowledged(loads: Sequence[SeatLoad]) -> set[tuple[str, str]]:
    return set().union(*(load.grants() for load in loads))


def _endings(loads: Sequence[SeatLoad]) -> dict[str, int]:
    total: collections.Counter[str] = collections.Counter()
    for load in loads:
        total.update(load.endings)
    return dict(total)


# --- a. SIGKILL under load ---------------------------------------------------------------


@attrs.define
class SigkillReport:
    rounds: int
    acknowledged: int = 0
    lost: int = 0
    lost_examples: list[str] = attrs.Factory(list)
    acknowledged_per_round: list[int] = attrs.Factory(list)
    restart_seconds_median: float = 0.0
    restart_seconds_max: float = 0.0
    records: int = 0
    served_after_crashes: bool = False
    clean_stop_status: int | None = None
    verify_status: int | None = None
    verify_output: str = ""
    connection_endings: dict[str, int] = attrs.Factory(dict)
    seconds: float = 0.0


async def sigkill_under_load(where: Path, rounds: int, *,
                             sites: Sequence[str] = ("north", "south", "east"),
                             seed: int = 9) -> SigkillReport:
    """SIGKILL the master ``rounds`` times under load, each at a random moment of a ~1 s
    burst; after each kill every grant acknowledged in that round must be in the ledger."""
    started = trio.current_time()
    rng = random.Random(seed)
    report = SigkillReport(rounds)
    deployment = deploy(where, sites)
    master = MasterProcess(deployment, where / "logs")
    bundles = {site: deployment.bundle(site) for site in sites}
    restarts: list[float] = []
    read_to = 0
    all_loads: list[SeatLoad] = []
    with killed_at_exit(master):
        for round_ in range(rounds):
            t0 = trio.current_time()
            await master.start()
            restarts.append(trio.current_time() - t0)
            loads = [SeatLoad(bundles[site], deployment.address, f"r{round_}")
                     for site in sites]
            all_loads += loads
            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    for load in loads:
                        nursery.start_soon(load.run)
                    await _wait_for(lambda: len(_acknowledged(loads)) >= 50, 30,  # noqa: B023
                                    "the load never got going")
                    await trio.sleep(rng.uniform(0.2, 1.2))
                    os.kill(master.pid, signal.SIGKILL)
                    # each load ends by itself as its connection breaks
            master.kill()
            acknowledged = _acknowledged(loads)
            view = ledger_view(deployment.root, start=read_to + 1)
            read_to = view.max_id
            missing = acknowledged - view.granted
            report.acknowledged += len(acknowledged)
            report.acknowledged_per_round.append(len(acknowledged))
            report.lost += len(missing)
            report.lost_examples += sorted(f"round {round_}: {s}/{u}" for s, u in missing)[:3]

        # A last start after the crashes: it serves, and stops cleanly.
        await master.start()
        with trio.fail_after(30):
            await first_grant_seconds(bundles[sites[0]], deployment.address, "after-crashes")
        report.served_after_crashes = True
        report.clean_stop_status = await master.stop()
    verify = audit_verify(deployment.root)
    report.verify_status = verify.returncode
    report.verify_output = (verify.stderr or verify.stdout).strip()[-500:]
    report.records = ledger_view(deployment.root, start=read_to + 1).max_id
    report.restart_seconds_median = round(statistics.median(restarts), 2)
    report.restart_seconds_max = round(max(restarts), 2)
    report.connection_endings = _endings(all_loads)
    report.seconds = round(trio.current_time() - started, 1)
    return report


# --- b. a faulty link between a real slave and the master ---------------------------------


class Dialler:
    """A dialler on the slave's socket: log agents on and off at random until stopped,
    keeping what it was told (the seats it believes it holds)."""

    def __init__(self, slave: SlaveProcess, seed: int, *, target_held: int = 20) -> None:
        self.slave = slave
        self.rng = random.Random(seed)
        self.target_held = target_held
        self.held: set[str] = set()
        self.statuses: collections.Counter[str] = collections.Counter()
        self.refused: collections.Counter[str] = collections.Counter()
        self.failed: collections.Counter[str] = collections.Counter()
        self.releases = 0
        self.slowest = 0.0
        self._next = 0
        self._stopping = False
        self._done = trio.Event()

    async def run(self) -> None:
        try:
            while not self._stopping:
                await self._one()
                await trio.sleep(0.02)
        finally:
            self._done.set()

    async def stop(self) -> None:
        """Stop after the request in flight (its answer is kept)."""
        self._stopping = True
        await self._done.wait()

    async def _one(self) -> None:
        release = self.held and (len(self.held) >= 2 * self.target_held
                                 or self.rng.random() < len(self.held) / (2 * self.target_held))
        t0 = trio.current_time()
        try:
            if release:
                user = self.rng.choice(sorted(self.held))
                answer = await self.slave.ask({"op": "release", "user": user})
            else:
                self._next += 1
                user = f"agent-{self._next}"
                answer = await self.slave.ask({"op": "acquire", "user": user, "class": "PRED",
                                               "tenant": "t1", "campaign": "c1"})
        except OSError as e:  # the socket timed out: what happened to ``user`` is unknown
            self.failed[type(e).__name__] += 1
            return
        finally:
            self.slowest = max(self.slowest, trio.current_time() - t0)
        if not answer.get("ok"):
            self.refused[f"{'release' if release else 'acquire'}: {answer.get('reason')}"] += 1
        elif release:
            self.held.discard(user)
            self.releases += 1
        else:
            self.held.add(user)
            self.statuses[str(answer.get("status"))] += 1


@attrs.define
class ProxyReport:
    faults: list[str] = attrs.Factory(list)
    acquired: dict[str, int] = attrs.Factory(dict)  # by the status the slave answered
    released: int = 0
    refused: dict[str, int] = attrs.Factory(dict)
    dialler_failures: dict[str, int] = attrs.Factory(dict)
    slowest_answer_seconds: float = 0.0
    back_online_seconds_max: float = 0.0
    converged_seconds: float | None = None
    seat_list_status: int | None = None  # of `seatledger seat list --json`, at the end
    slave_seats: int = 0
    master_seats: int = 0
    dialler_seats: int = 0
    only_on_slave: list[str] = attrs.Factory(list)
    only_on_master: list[str] = attrs.Factory(list)
    dialler_disagrees: list[str] = attrs.Factory(list)
    slave_duplicates: int = 0
    master_double_grants: int = 0
    connections_cut: int = 0
    proxy_connections: int = 0  # the slave's connections through the proxy
    seconds: float = 0.0


FAULT_KINDS = ("cut", "blackhole", "delay")


async def _slave_state(slave: SlaveProcess) -> dict[str, Any]:
    return await slave.ask({"op": "list"})


async def _wait_online(slave: SlaveProcess, timeout: float) -> float:
    started = trio.current_time()
    with trio.move_on_after(timeout):
        while (await _slave_state(slave))["state"] != "online":
            await trio.sleep(0.1)
        return trio.current_time() - started
    raise trio.TooSlowError(f"the slave was not back online within {timeout:.0f}s")


async def faulty_link(where: Path, faults: int, *, seed: int = 9,
                      blackhole_seconds: float = 6.0, delay_seconds: float = 0.25
                      ) -> ProxyReport:
    """A real slave reaches the master through a :class:`FaultProxy` that cuts, blackholes
    and delays the link (``faults`` of them, in turn) while a dialler works its socket;
    then seats on both sides must agree."""
    started = trio.current_time()
    report = ProxyReport()
    # Heartbeats every second: a silent link is noticed in 3 s, not 30.
    deployment = deploy(where, ["north"], local_limits={"PRED": 1000}, heartbeat_seconds=1)
    master = MasterProcess(deployment, where / "logs")
    proxy = FaultProxy(deployment.address)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        slave = SlaveProcess(deployment.point_site_at("north", proxy.address),
                             where / "slave", where / "logs")
        with killed_at_exit(master, slave):
            await master.start()
            await slave.start()
            await _wait_online(slave, 60)
            dialler = Dialler(slave, seed)
            nursery.start_soon(dialler.run)
            await trio.sleep(1.0)
            back: list[float] = []
            for i in range(faults):
                kind = FAULT_KINDS[i % len(FAULT_KINDS)]
                report.faults.append(kind)
                if kind == "cut":
                    report.connections_cut += proxy.cut()
                    await trio.sleep(1.0)
                elif kind == "blackhole":
                    proxy.blackhole()
                    await trio.sleep(blackhole_seconds)
                else:
                    proxy.delay(delay_seconds)
                    await trio.sleep(4.0)
                proxy.restore()
                back.append(await _wait_online(slave, 90))
                await trio.sleep(1.0)
            await dialler.stop()
            report.back_online_seconds_max = round(max(back, default=0.0), 2)

            # Both sides settle: the slave's seats are the master's seats for the site.
            def seats_on_master() -> set[str]:
                return set(ledger_view(deployment.root).seats["north"])

            t0 = trio.current_time()
            with trio.move_on_after(30):
                while True:
                    on_slave_now = {s["user"] for s in (await _slave_state(slave))["seats"]}
                    if on_slave_now == await trio.to_thread.run_sync(seats_on_master):
                        report.converged_seconds = round(trio.current_time() - t0, 2)
                        break
                    await trio.sleep(0.5)
            listed = await trio.to_thread.run_sync(
                cli, "seat", "list", "--json", "--state-dir", str(where / "slave"))
            report.seat_list_status = listed.returncode
            on_slave = ([s["user"] for s in _json(listed.stdout)["seats"]]
                        if listed.returncode == 0 else [])
            view = ledger_view(deployment.root, keep_events=True)
        nursery.cancel_scope.cancel()
    on_master = set(view.seats["north"])
    report.acquired = dict(dialler.statuses)
    report.released = dialler.releases
    report.refused = dict(dialler.refused)
    report.dialler_failures = dict(dialler.failed)
    report.slowest_answer_seconds = round(dialler.slowest, 2)
    report.slave_seats = len(on_slave)
    report.master_seats = len(on_master)
    report.dialler_seats = len(dialler.held)
    report.only_on_slave = sorted(set(on_slave) - on_master)
    report.only_on_master = sorted(on_master - set(on_slave))
    report.dialler_disagrees = sorted(dialler.held ^ set(on_slave))
    report.slave_duplicates = len(on_slave) - len(set(on_slave))
    report.master_double_grants = len(double_grants(view.events, "north"))
    report.proxy_connections = proxy.statistics().accepted
    report.seconds = round(trio.current_time() - started, 1)
    return report


def _json(text: str) -> dict[str, Any]:
    value = json.loads(text)
    assert isinstance(value, dict), text
    return value


# --- c. operator commands under load ------------------------------------------------------


@attrs.define
class OperatorReport:
    commands: int
    succeeded: int = 0
    failures: list[str] = attrs.Factory(list)
    command_seconds_median: float = 0.0
    command_seconds_max: float = 0.0
    grants_per_second_before: float = 0.0
    grants_per_second_during: float = 0.0
    progress: list[int] = attrs.Factory(list)  # acknowledged grants after each command
    master_alive: bool = False
    load_connection_endings: dict[str, int] = attrs.Factory(dict)
    clean_stop_status: int | None = None
    verify_status: int | None = None
    verify_output: str = ""
    sites_enrolled: int = 0
    seconds: float = 0.0


def _run_command(argv: list[str]) -> tuple[int, str]:
    """One ``seatledger`` command in this process (as tests/integration/test_one_writer.py
    runs them), its output kept apart."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = seatledger_main(argv)
    return status, err.getvalue().strip()


async def operator_under_load(where: Path, commands: int) -> OperatorReport:
    """``commands`` operator commands (enrol, revoke, amend in turn) while two sites load
    the master: all succeed, the master lives, the seal verifies."""
    started = trio.current_time()
    report = OperatorReport(commands)
    deployment = deploy(where, ["north", "south"])
    master = MasterProcess(deployment, where / "logs")
    argvs = _operator_commands(deployment.root, where)[:commands]
    assert len(argvs) == commands, f"test_one_writer offers {len(argvs)} commands"
    loads = [SeatLoad(deployment.bundle(site), deployment.address, site)
             for site in ("north", "south")]
    durations: list[float] = []
    with killed_at_exit(master):
        await master.start()
        async with trio.open_nursery() as nursery:
            for load in loads:
                nursery.start_soon(load.run)
            await _wait_for(lambda: len(_acknowledged(loads)) >= 500, 30,
                            "the load never got going")
            before = len(_acknowledged(loads))
            await trio.sleep(2.0)
            report.grants_per_second_before = round((len(_acknowledged(loads)) - before) / 2, 1)
            phase_start, at_start = trio.current_time(), len(_acknowledged(loads))
            for argv in argvs:
                t0 = trio.current_time()
                status, err = await trio.to_thread.run_sync(_run_command, argv)
                durations.append(trio.current_time() - t0)
                report.progress.append(len(_acknowledged(loads)))
                if status == 0:
                    report.succeeded += 1
                else:
                    report.failures.append(f"{' '.join(argv[:3])}: exit {status}: {err}")
            elapsed = trio.current_time() - phase_start
            report.grants_per_second_during = round(
                (len(_acknowledged(loads)) - at_start) / elapsed, 1)
            report.master_alive = master.alive
            nursery.cancel_scope.cancel()
        report.load_connection_endings = _endings(loads)
        report.clean_stop_status = await master.stop()
    verify = audit_verify(deployment.root)
    report.verify_status = verify.returncode
    report.verify_output = (verify.stderr or verify.stdout).strip()[-500:]
    report.sites_enrolled = len(ledger_view(deployment.root).seats)
    report.command_seconds_median = round(statistics.median(durations), 2)
    report.command_seconds_max = round(max(durations), 2)
    report.seconds = round(trio.current_time() - started, 1)
    return report


# --- d. the wall clock set back ------------------------------------------------------------


@attrs.define
class ClockStepReport:
    step_hours: float
    first_stop_status: int | None = None
    clock_stepped_running: int = 0
    clock_stepped_at_restart: int = 0
    step_readings: list[dict[str, str]] = attrs.Factory(list)
    # While running, ClockStepped holds both readings: |recorded - wall_clock - step|, worst.
    running_step_error_seconds: float | None = None
    # At the restart, recorded time went on from the last record (never back): seconds.
    restart_continued_from_last_seconds: float | None = None
    records: int = 0
    backwards: int = 0  # records whose time is before their predecessor's
    advanced_after_step_seconds: float = 0.0
    acknowledged: int = 0
    lost: int = 0
    verify_status: int | None = None
    verify_output: str = ""
    seconds: float = 0.0


async def clock_step_back(where: Path, *, hours: float = 10.0) -> ClockStepReport:
    """A master under libfaketime, its wall clock set back ``hours`` while it serves, then
    restarted on that clock: ClockStepped is recorded both times and recorded time never
    goes backwards.

    Raises:
        MissingEnvironment: libfaketime is not installed (Debian package ``faketime``).
    """
    library = faketime_library()
    if library is None:
        raise MissingEnvironment("libfaketime is missing: apt-get install faketime")
    started = trio.current_time()
    report = ClockStepReport(hours)
    offset = where / "faketime.offset"
    offset.write_text("+0\n")
    deployment = deploy(where, ["north"])
    master = MasterProcess(deployment, where / "logs", env=faketime_env(library, offset),
                           command=[sys.executable, str(FAKETIME_SHIM)])
    load = SeatLoad(deployment.bundle("north"), deployment.address, "clock", window=10,
                    pace=0.05, reconnect=True)
    with killed_at_exit(master):
        await master.start()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(load.run)
            await _wait_for(lambda: len(load.acknowledged) >= 50, 30, "no grants")
            await trio.sleep(1.5)
            offset.write_text(f"-{int(hours * 3600)}\n")  # re-read within a second
            await trio.sleep(4.0)
            report.first_stop_status = await master.stop()
            first_run = ledger_view(deployment.root).max_id
            await master.start()  # on the clock that is still 10 h behind
            await trio.sleep(3.0)
            nursery.cancel_scope.cancel()
        await master.stop()
    view = ledger_view(deployment.root, keep_events=True)
    stamps = {position: e.timestamp for position, e in view.events}
    ordered = [stamps[p] for p in sorted(stamps)]
    report.records = len(ordered)
    report.backwards = sum(1 for a, b in zip(ordered, ordered[1:], strict=False) if b < a)
    steps = [(p, e) for p, e in view.events if type(e).__name__ == "ClockStepped"]
    report.clock_stepped_running = sum(1 for p, _ in steps if p <= first_run)
    report.clock_stepped_at_restart = sum(1 for p, _ in steps if p > first_run)
    report.step_readings = [{"wall_clock": e.wall_clock.isoformat(),
                             "recorded": e.recorded.isoformat()} for _, e in steps]
    running = [e for p, e in steps if p <= first_run]
    restart = [e for p, e in steps if p > first_run]
    last_of_first_run = max(p for p in stamps if p <= first_run)
    if running:
        report.running_step_error_seconds = round(max(
            abs(((e.recorded - e.wall_clock) - timedelta(hours=hours)).total_seconds())
            for e in running), 1)
        report.advanced_after_step_seconds = round(
            (stamps[last_of_first_run] - running[0].timestamp).total_seconds(), 2)
    if restart:
        report.restart_continued_from_last_seconds = round(
            (restart[0].recorded - stamps[last_of_first_run]).total_seconds(), 2)
    report.acknowledged = len(load.acknowledged)
    report.lost = len(load.grants() - view.granted)
    verify = audit_verify(deployment.root)
    report.verify_status = verify.returncode
    report.verify_output = (verify.stderr or verify.stdout).strip()[-500:]
    report.seconds = round(trio.current_time() - started, 1)
    return report


# --- e. an unauthenticated connection flood -----------------------------------------------


@attrs.define
class FloodReport:
    connections: int
    established: int = 0
    closed_by_master: int = 0
    connect_failed: dict[str, int] = attrs.Factory(dict)
    held_at_peak: int = 0
    site_first_grant_seconds_max: float = 0.0
    site_first_grant_seconds: list[float] = attrs.Factory(list)
    rss_before_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_after_mb: float = 0.0
    master_open_files_peak: int = 0
    master_open_files_after: int = 0
    master_alive: bool = False
    seconds: float = 0.0


async def connection_flood(where: Path, connections: int, *, probes: int = 5) -> FloodReport:
    """``connections`` TCP connections from 127.0.0.2 and up that never handshake, held
    open, while a real site on 127.0.0.1 logs on through fresh sessions."""
    started = trio.current_time()
    report = FloodReport(connections)
    deployment = deploy(where, ["north"])
    master = MasterProcess(deployment, where / "logs")
    bundle = deployment.bundle("north")
    with killed_at_exit(master):
        await master.start()
        with trio.fail_after(30):
            await first_grant_seconds(bundle, deployment.address, "warm-up")
        report.rss_before_mb = round(master.rss_bytes() / MB, 1)
        async with trio.open_nursery() as nursery:
            figures = await nursery.start(flood, deployment.address, connections)
            await trio.sleep(1.0)
            for i in range(probes):
                with trio.fail_after(60):
                    report.site_first_grant_seconds.append(round(
                        await first_grant_seconds(bundle, deployment.address, f"probe-{i}"), 3))
                report.rss_peak_mb = max(report.rss_peak_mb, round(master.rss_bytes() / MB, 1))
                report.master_open_files_peak = max(report.master_open_files_peak,
                                                    master.open_files())
                await trio.sleep(0.2)
            report.established = figures.established
            report.closed_by_master = figures.closed_by_master
            report.connect_failed = dict(figures.connect_failed)
            report.held_at_peak = figures.peak_held
            nursery.cancel_scope.cancel()
        await trio.sleep(2.0)  # the master notices the closed connections
        report.rss_after_mb = round(master.rss_bytes() / MB, 1)
        report.master_open_files_after = master.open_files()
        report.master_alive = master.alive
        await master.stop()
    report.site_first_grant_seconds_max = max(report.site_first_grant_seconds)
    report.seconds = round(trio.current_time() - started, 1)
    return report


# --- f. a full disk ------------------------------------------------------------------------


@attrs.define
class FullDiskReport:
    file_system_mb: float = 0.0
    filled_bytes: int = 0
    refused_while_full: dict[str, int] = attrs.Factory(dict)
    refused: dict[str, int] = attrs.Factory(dict)
    seconds_to_refuse: float | None = None
    master_alive_while_full: bool = False
    master_died_after_seconds: float | None = None
    master_stderr_tail: str = ""
    full_seconds: float = 0.0
    seconds_to_recover: float | None = None
    acknowledged: int = 0
    lost: int = 0
    sessions: int = 0
    connection_endings: dict[str, int] = attrs.Factory(dict)
    clean_stop_status: int | None = None
    verify_status: int | None = None
    verify_output: str = ""
    seconds: float = 0.0


def small_file_system() -> Path:
    """The small file system .ci/run mounts (``$SEATLEDGER_TEST_SMALL_FS``).

    Raises:
        MissingEnvironment: it is not set.
    """
    where = os.environ.get(SMALL_FS_ENV)
    if not where:
        raise MissingEnvironment(f"{SMALL_FS_ENV} is not set: run the tests through .ci/run "
                                 "(it mounts a 4 MB tmpfs)")
    return Path(where)


async def full_disk(where: Path, *, full_seconds: float = 12.0) -> FullDiskReport:
    """The master's data directory on a small file system, filled while the master serves a
    paced load: grants are refused with ``store_unavailable`` and the master keeps running
    (``full_seconds``: today it exits after 10 s); space freed, grants resume by themselves;
    no acknowledged grant lost."""
    started = trio.current_time()
    report = FullDiskReport()
    small = small_file_system() / f"chaos-{uuid.uuid4().hex[:8]}"
    small.mkdir()
    stat = os.statvfs(small)
    report.file_system_mb = round(stat.f_blocks * stat.f_frsize / MB, 1)
    filler = small / "filler"
    try:
        deployment = deploy(where, ["north"], data_dir=small / "data")
        master = MasterProcess(deployment, where / "logs")
        load = SeatLoad(deployment.bundle("north"), deployment.address, "disk", window=10,
                        pace=0.1, reconnect=True)
        with killed_at_exit(master):
            await master.start()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(load.run)
                await _wait_for(lambda: len(load.acknowledged) >= 50, 30, "no grants")
                report.filled_bytes = await trio.to_thread.run_sync(fill_disk, filler)
                full_at = trio.current_time()
                report.seconds_to_refuse = await _within(
                    lambda: load.refused["store_unavailable"] > 0 or not master.alive, 30)
                report.refused_while_full = dict(load.refused)
                died = await _within(lambda: not master.alive,
                                     max(0.0, full_seconds - (trio.current_time() - full_at)))
                report.full_seconds = round(trio.current_time() - full_at, 1)
                report.master_alive_while_full = died is None
                if died is not None:
                    report.master_died_after_seconds = round(trio.current_time() - full_at, 1)
                    report.master_stderr_tail = master.stderr_tail(5)
                filler.unlink()
                freed_at = trio.current_time()
                if master.alive:
                    report.seconds_to_recover = await _within(
                        lambda: load.last_grant > freed_at or not master.alive, 60)
                if not master.alive:
                    report.seconds_to_recover = None
                await trio.sleep(1.0)
                nursery.cancel_scope.cancel()
            report.refused = dict(load.refused)
            report.clean_stop_status = await master.stop()
        view = ledger_view(deployment.root)
        report.acknowledged = len(load.acknowledged)
        report.lost = len(load.grants() - view.granted)
        report.sessions = load.sessions
        report.connection_endings = dict(load.endings)
        verify = audit_verify(deployment.root)
        report.verify_status = verify.returncode
        report.verify_output = (verify.stderr or verify.stdout).strip()[-500:]
    finally:
        filler.unlink(missing_ok=True)
        shutil.rmtree(small, ignore_errors=True)
    report.seconds = round(trio.current_time() - started, 1)
    return report


__all__ = [
    "ClockStepReport",
    "FloodReport",
    "FullDiskReport",
    "MissingEnvironment",
    "OperatorReport",
    "ProxyReport",
    "SigkillReport",
    "clock_step_back",
    "connection_flood",
    "faulty_link",
    "full_disk",
    "operator_under_load",
    "sigkill_under_load",
    "small_file_system",
]
