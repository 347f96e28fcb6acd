"""The chaos harness: real `seatledger` processes and raw wire clients.

* :func:`deploy` makes a data directory with a licence and enrolled sites (their bundles).
* :class:`MasterProcess` and :class:`SlaveProcess` run ``python -m seatledger.cli master`` and
  ``... slave``; their output goes to log files (a full pipe would stall a daemon), and
  :func:`killed_at_exit` kills whatever is left when the block ends, however it ends.
* :class:`SeatLoad` is one site's raw, pipelined acquire load over mutual TLS; it records
  every grant the master acknowledged, and how each connection ended.
* :func:`flood` opens TCP connections that never handshake, from 127.0.0.2 and up.
* :func:`ledger_view` reads the ledger read-only (with or without a master running).

The fault-injecting proxy is in :mod:`tests.chaos.proxy`.
"""

from __future__ import annotations

import collections
import errno
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import attrs
import trio

from seatledger.config.bundle import Bundle
from seatledger.config.settings import load_config
from seatledger.config.store import open_ledger
from seatledger.services.datadir import init_data_dir
from seatledger.services.sites import enrol_site
from tests.processes import die_with_parent
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
    Hello,
    Message,
    Notice,
    Refused,
    RemoteProtocolError,
    Role,
    Sentinel,
    Sync,
    SyncDone,
    Welcome,
)
from transport.local_socket import request as local_request
from transport.tls import client_context

ROUNDS_ENV = "SEATLEDGER_CHAOS_ROUNDS"
DEFAULT_ROUNDS = 5
CLI = [sys.executable, "-m", "seatledger.cli"]
LIMITS = {"PRED": 1_000_000, "ACD": 100}

# How a connection to the master ends when the master dies or the link is cut: the stream
# breaks or closes under us (trio wraps ssl errors as BrokenResourceError), or the master's
# last bytes stop inside a frame.
LINK_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, RemoteProtocolError)
# Connecting while the master is down or restarting: refused, reset, a failed handshake
# (ssl.SSLError is an OSError; trio reports it as BrokenResourceError), or one that hangs.
CONNECT_ERRORS = (OSError, trio.BrokenResourceError, trio.TooSlowError)


@attrs.frozen
class Counts:
    """How much chaos: a few rounds in the test suite, the full counts in the benchmark."""

    kills: int
    proxy_faults: int
    operator_commands: int
    flood_connections: int

    @classmethod
    def for_rounds(cls, rounds: int, *, flood_connections: int = 2000) -> Counts:
        """``rounds`` SIGKILLs; a cut, blackhole and delay per five; five commands per kill."""
        return cls(kills=rounds, proxy_faults=3 * max(1, math.ceil(rounds / 5)),
                   operator_commands=5 * rounds, flood_connections=flood_connections)

    @classmethod
    def from_env(cls) -> Counts:
        """The suite's counts: ``$SEATLEDGER_CHAOS_ROUNDS`` (default 5) rounds."""
        return cls.for_rounds(int(os.environ.get(ROUNDS_ENV) or DEFAULT_ROUNDS))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the data directory ------------------------------------------------------------------


@attrs.frozen
class Deployment:
    """A data directory with a licence and enrolled sites, and the port its master uses."""

    root: Path
    port: int
    bundle_files: Mapping[str, Path]

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def bundle(self, site: str) -> Bundle:
        return Bundle.read(self.bundle_files[site])

    def point_site_at(self, site: str, address: str) -> Path:
        """Rewrite ``site``'s bundle to reach the master at ``address`` (a proxy)."""
        path = self.bundle_files[site]
        attrs.evolve(Bundle.read(path), primary=address).write(path)
        return path


def deploy(where: Path, sites: Sequence[str], *, data_dir: Path | None = None,
           local_limits: Mapping[str, int] | None = None,
           heartbeat_seconds: int | None = None) -> Deployment:
    """A data directory (``where/data`` unless ``data_dir``), a licence with :data:`LIMITS`,
    and ``sites`` enrolled, their bundles in ``where``."""
    root = data_dir or where / "data"
    config = init_data_dir(root, history=False)  # the licence below begins it
    if heartbeat_seconds is not None:
        text = config.layout.config.read_text()
        text, n = re.subn(r"(?m)^heartbeat_seconds = .*$",
                          f"heartbeat_seconds = {heartbeat_seconds}", text)
        assert n == 1, "seatledger.toml has no [master] heartbeat_seconds line to change"
        config.layout.config.write_text(text)
        config = load_config(root)
    port = free_port()
    bundles: dict[str, Path] = {}
    with open_ledger(config) as app:
        app.issue_licence(customer="Acme", limits=dict(LIMITS))
        for site in sites:
            bundles[site] = enrol_site(config, app, site, master=f"127.0.0.1:{port}",
                                       local_limits=local_limits,
                                       output=where / f"{site}.bundle")
    return Deployment(root, port, bundles)


# --- processes ---------------------------------------------------------------------------


class DaemonFailed(Exception):
    """A daemon exited before it was ready."""


class _Daemon:
    """A CLI daemon process whose stdout and stderr go to files next to its state."""

    ready_text = ""

    def __init__(self, argv: Sequence[str], logs: Path, name: str, *,
                 env: Mapping[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.logs = logs
        self.name = name
        self.env = dict(env) if env is not None else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _paths(self) -> tuple[Path, Path]:
        return (self.logs / f"{self.name}-{self.starts}.out",
                self.logs / f"{self.name}-{self.starts}.err")

    def stderr_tail(self, lines: int = 15) -> str:
        if not self.starts:
            return ""
        return "\n".join(self._paths()[1].read_text(errors="replace").splitlines()[-lines:])

    async def start(self, timeout: float = 90.0) -> None:
        """Start the process and wait for its ready line. Raises DaemonFailed."""
        assert not self.alive, f"{self.name} is running already"
        self.starts += 1
        self.logs.mkdir(parents=True, exist_ok=True)
        out, err = self._paths()
        with out.open("wb") as stdout, err.open("wb") as stderr:
            self.proc = subprocess.Popen(self.argv, stdout=stdout, stderr=stderr,
                                         stdin=subprocess.DEVNULL, env=self.env,
                                         preexec_fn=die_with_parent)
        with trio.move_on_after(timeout):
            while self.ready_text not in out.read_text(errors="replace"):
                if self.proc.poll() is not None:
                    raise DaemonFailed(f"{self.name} exited with {self.proc.returncode} before "
                                       f"it was ready:\n{self.stderr_tail()}")
                await trio.sleep(0.05)
            return
        self.kill()
        raise DaemonFailed(f"{self.name} was not ready after {timeout:.0f}s:\n"
                           f"{self.stderr_tail()}")

    def kill(self) -> None:
        """SIGKILL (if still running) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    async def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for the exit status (SIGKILL after ``timeout``)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(timeout):
            while self.proc.poll() is None:
                await trio.sleep(0.05)
        self.kill()
        return int(self.proc.returncode)

    def rss_bytes(self) -> int:
        """The process's resident memory (VmRSS)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise LookupError(f"no VmRSS for pid {self.pid}")

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))


class MasterProcess(_Daemon):
    """``seatledger master --data-dir ROOT --listen 127.0.0.1:PORT``; ``command`` replaces
    ``python -m seatledger.cli`` (a wrapper such as the faketime shim)."""

    ready_text = "serving"

    def __init__(self, deployment: Deployment, logs: Path, *,
                 env: Mapping[str, str] | None = None,
                 command: Sequence[str] | None = None) -> None:
        super().__init__([*(command or CLI), "master", "--data-dir", str(deployment.root),
                          "--listen", f"127.0.0.1:{deployment.port}"], logs, "master", env=env)


class SlaveProcess(_Daemon):
    """``seatledger slave`` for a site, retrying its master every second and never cutting
    itself off within a test's outage."""

    ready_text = "socket"

    def __init__(self, bundle: Path, state_dir: Path, logs: Path) -> None:
        super().__init__([*CLI, "slave", "--bundle", str(bundle), "--state-dir", str(state_dir),
                          "--retry", "1s", "--attempts", "100000", "--cutoff-retry", "1s"],
                         logs, f"slave-{bundle.stem}")
        self.socket = state_dir / "slave.sock"

    async def ask(self, payload: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        """One request on the slave's dialler socket (what ``seatledger seat`` sends)."""
        return await trio.to_thread.run_sync(local_request, self.socket, payload, timeout)


@contextmanager
def killed_at_exit(*daemons: _Daemon) -> Iterator[None]:
    """Kill (SIGKILL) every one of ``daemons`` still running when the block ends."""
    try:
        yield
    finally:
        for daemon in reversed(daemons):
            daemon.kill()


def cli(*argv: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """Run one ``seatledger`` command in its own process."""
    return subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def audit_verify(root: Path) -> subprocess.CompletedProcess[str]:
    return cli("audit", "verify", "--data-dir", str(root))


# --- the raw load client -----------------------------------------------------------------


class SeatLoad:
    """One site's acquire load: ``window`` pipelined Acquires for fresh users, again and
    again, over a raw mutual-TLS connection; every Granted is recorded.

    ``pace`` seconds between bursts (0: as fast as answers come). With ``reconnect`` a
    connection that ends is opened again (after ``reconnect_delay``) until cancelled;
    without, :meth:`run` returns when the connection ends.
    """

    def __init__(self, bundle: Bundle, address: tuple[str, int], prefix: str, *,
                 window: int = 20, pace: float = 0.0, reconnect: bool = False,
                 reconnect_delay: float = 0.2) -> None:
        self.bundle = bundle
        self.address = address
        self.prefix = prefix
        self.window = window
        self.pace = pace
        self.reconnect = reconnect
        self.reconnect_delay = reconnect_delay
        self.acknowledged: set[str] = set()
        self.refused: collections.Counter[str] = collections.Counter()
        self.sessions = 0  # connections that got as far as SyncDone
        self.endings: collections.Counter[str] = collections.Counter()
        self.last_grant = -math.inf  # trio time of the latest Granted
        self._request = 0
        self._context = client_context(bundle.ca_pem.encode(), bundle.cert_pem.encode(),
                                       bundle.key_pem.encode())

    @property
    def site(self) -> str:
        return self.bundle.site

    def grants(self) -> set[tuple[str, str]]:
        return {(self.site, user) for user in self.acknowledged}

    async def run(self) -> None:
        while True:
            try:
                stream = await self._connect()
            except CONNECT_ERRORS as e:
                self.endings[f"connect: {type(e).__name__}"] += 1
            else:
                try:
                    self.endings[await self._session(stream)] += 1
                except LINK_ERRORS as e:
                    self.endings[type(e).__name__] += 1
                finally:
                    with trio.CancelScope(shield=True):
                        await trio.aclose_forcefully(stream)
            if not self.reconnect:
                return
            await trio.sleep(self.reconnect_delay)

    async def _connect(self) -> trio.SSLStream[trio.SocketStream]:
        tcp = await trio.open_tcp_stream(*self.address)
        stream = trio.SSLStream(tcp, self._context, server_hostname="127.0.0.1")
        try:
            with trio.fail_after(30):
                await stream.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return stream

    async def _session(self, stream: trio.SSLStream[trio.SocketStream]) -> str:
        """Hello, Sync, then bursts until the link ends; returns how it ended."""
        conn = Connection(Role.CLIENT)
        await stream.send_all(conn.send(Hello(self.site, PROTOCOL_VERSION)))
        welcome = await _next_message(stream, conn)
        if not isinstance(welcome, Welcome):
            return f"handshake: {type(welcome).__name__}"
        await stream.send_all(conn.send(Sync((), (), False)))
        while not isinstance(event := await _next_message(stream, conn), SyncDone):
            if event is CLOSED or isinstance(event, Error | Goodbye):
                return f"sync: {_ending(event)}"
        self.sessions += 1
        users: dict[int, str] = {}
        while True:
            burst = []
            for _ in range(self.window):
                self._request += 1
                users[self._request] = f"{self.prefix}-{self._request}"
                burst.append(conn.send(Acquire(self._request, users[self._request], "PRED")))
            await stream.send_all(b"".join(burst))
            answered = 0
            while answered < self.window:
                event = await _next_message(stream, conn)
                if isinstance(event, Granted):
                    self.acknowledged.add(users.pop(event.request_id))
                    self.last_grant = trio.current_time()
                    answered += 1
                elif isinstance(event, Refused):
                    users.pop(event.request_id, None)
                    self.refused[event.reason] += 1
                    answered += 1
                elif event is CLOSED or isinstance(event, Error | Goodbye):
                    return _ending(event)
            if self.pace:
                await trio.sleep(self.pace)


def _ending(event: object) -> str:
    if isinstance(event, Error):
        return f"Error {event.code}"
    if isinstance(event, Goodbye):
        return "Goodbye"
    return "closed"


async def _next_message(stream: trio.SSLStream[trio.SocketStream],
                        conn: Connection) -> Message | Literal[Sentinel.CLOSED]:
    """The next message other than Heartbeat or Notice, or CLOSED."""
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif event is CLOSED or not isinstance(event, Heartbeat | Notice):
            return event


async def first_grant_seconds(bundle: Bundle, address: tuple[str, int], user: str) -> float:
    """Seconds from a fresh TCP connect to the Granted for one Acquire (a real site's
    log-on through a new session): connect, TLS, Hello, Sync, Acquire."""
    load = SeatLoad(bundle, address, user, window=1)
    started = trio.current_time()
    stream = await load._connect()
    try:
        conn = Connection(Role.CLIENT)
        await stream.send_all(conn.send(Hello(bundle.site, PROTOCOL_VERSION)))
        assert isinstance(welcome := await _next_message(stream, conn), Welcome), welcome
        await stream.send_all(conn.send(Sync((), (), False)))
        while not isinstance(event := await _next_message(stream, conn), SyncDone):
            assert event is not CLOSED, "the master closed the session during Sync"
        await stream.send_all(conn.send(Acquire(1, user, "PRED")))
        answer = await _next_message(stream, conn)
        assert isinstance(answer, Granted), answer
        return trio.current_time() - started
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)


# --- an unauthenticated flood ------------------------------------------------------------


@attrs.define
class Flood:
    """Figures of :func:`flood`: attempts, connections the master accepted and kept, the
    ones it closed, and local failures (EMFILE here: the flooder ran out of descriptors)."""

    attempts: int = 0
    established: int = 0
    closed_by_master: int = 0
    connect_failed: collections.Counter[str] = attrs.Factory(collections.Counter)
    held: int = 0
    peak_held: int = 0


async def flood(address: tuple[str, int], count: int, *, per_source: int = 100,
                connect_timeout: float = 10.0,
                task_status: trio.TaskStatus[Flood] = trio.TASK_STATUS_IGNORED) -> None:
    """Open ``count`` TCP connections to ``address`` that never say a word, ``per_source``
    from each of 127.0.0.2, 127.0.0.3, ...; hold them until cancelled (a connection the
    master closes is closed here too, freeing its descriptor). ``task_status.started`` is
    given the live :class:`Flood` once every attempt has finished connecting."""
    figures = Flood()

    def failed(e: OSError) -> None:
        figures.connect_failed[errno.errorcode.get(e.errno or 0, str(e.errno))] += 1

    async def one(source: str, opened: trio.Event) -> None:
        figures.attempts += 1
        try:
            sock = trio.socket.socket()
        except OSError as e:  # EMFILE: this process has no descriptor left
            failed(e)
            opened.set()
            return
        with sock:
            try:
                with trio.fail_after(connect_timeout):
                    await sock.bind((source, 0))
                    await sock.connect(address)
            except trio.TooSlowError:
                figures.connect_failed["timeout"] += 1
                return
            except OSError as e:
                failed(e)
                return
            finally:
                opened.set()
            figures.established += 1
            figures.held += 1
            figures.peak_held = max(figures.peak_held, figures.held)
            try:
                while await sock.recv(4096):
                    pass  # the master has nothing to say before a ClientHello; ignore it
                figures.closed_by_master += 1
            except ConnectionError:  # reset or aborted by the master
                figures.closed_by_master += 1
            finally:
                figures.held -= 1

    async with trio.open_nursery() as nursery:
        events = []
        for i in range(count):
            event = trio.Event()
            events.append(event)
            source = i // per_source  # 127.0.0.2 and up: 127.0.0.1 is the real site's
            nursery.start_soon(one, f"127.0.{source // 250}.{2 + source % 250}", event)
            if i % 200 == 199:
                await trio.sleep(0)  # let the connects run instead of queueing thousands
        for event in events:
            await event.wait()
        task_status.started(figures)


# --- reading the ledger ------------------------------------------------------------------


@attrs.frozen
class LedgerView:
    """What a read-only look at the ledger found."""

    max_id: int
    granted: frozenset[tuple[str, str]]  # (site, user) of every SeatGranted read
    events: tuple[tuple[int, Any], ...]   # (position, event) read, only when asked for
    seats: Mapping[str, Mapping[str, str]]  # site -> user -> agent class, held now


def ledger_view(root: Path, *, start: int = 1, keep_events: bool = False) -> LedgerView:
    """Read the ledger from record ``start``, read-only (a master may be running)."""
    with open_ledger(load_config(root), read_only=True) as app:
        granted: set[tuple[str, str]] = set()
        kept: list[tuple[int, Any]] = []
        top = start - 1
        for position, event in app.events(start):
            top = position
            if type(event).__name__ == "SeatGranted":
                granted.add((event.site, event.user))
            if keep_events:
                kept.append((position, event))
        licence = app.replay()
        seats = {} if licence is None else {
            name: {user: seat.agent_class for user, seat in site.seats.items()}
            for name, site in licence.sites.items()}
    return LedgerView(top, frozenset(granted), tuple(kept), seats)


def double_grants(events: Sequence[tuple[int, Any]], site: str) -> list[str]:
    """Users ``site`` was granted a seat while the ledger already had them holding one."""
    holding: set[str] = set()
    doubled: list[str] = []
    for _, event in events:
        if getattr(event, "site", None) != site:
            continue
        kind = type(event).__name__
        if kind == "SeatGranted":
            if event.user in holding:
                doubled.append(event.user)
            holding.add(event.user)
        elif kind == "SeatReleased":
            holding.discard(event.user)
    return doubled


# --- full disks and clocks ---------------------------------------------------------------


def fill_disk(where: Path) -> int:
    """Write ``where`` (a file) until the file system is full; returns the bytes written."""
    written = 0
    with where.open("wb", buffering=0) as f:
        try:
            while True:
                written += f.write(b"\0" * 65536)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
    # Whatever the last partial block left: take it too, so that no write of the master fits.
    with where.open("ab", buffering=0) as f:
        for size in (4096, 512, 1):
            try:
                while True:
                    written += f.write(b"\0" * size)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
    return written


FAKETIME_LIBRARIES = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)
FAKETIME_SHIM = Path(__file__).with_name("faketime_shim.py")


def faketime_library() -> Path | None:
    """libfaketime (Debian package ``faketime``), if installed."""
    if shutil.which("faketime") is None:
        return None
    return next((Path(p) for p in FAKETIME_LIBRARIES if Path(p).exists()), None)


def faketime_env(library: Path, offset_file: Path) -> dict[str, str]:
    """The environment that runs a process on a wall clock offset by what ``offset_file``
    says (``+0``, ``-36000``: seconds), re-read every second; the monotonic clock is left
    alone (trio's clock runs on it, and so does the master's recorded time)."""
    env = dict(os.environ)
    env.pop("FAKETIME", None)  # it would override the file
    env.update(LD_PRELOAD=str(library), FAKETIME_TIMESTAMP_FILE=str(offset_file),
               FAKETIME_CACHE_DURATION="1", FAKETIME_DONT_FAKE_MONOTONIC="1")
    return env
