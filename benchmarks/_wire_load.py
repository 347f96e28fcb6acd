"""Load generation for benchmarks/wire.py: pipelining site links, and a bare TLS echo server.

The load generator drives the protocol core (:class:`transport.Connection`) directly, not
:class:`seatledger.slave.SlaveConnector` (which awaits each answer), so that a link can keep
a window of requests in flight. Its I/O is one ``selectors`` loop over non-blocking
``ssl.SSLSocket``s rather than trio's ``SSLStream``: the machine has two cores shared with the
server, and trio's TLS stream costs about 150 us of client CPU per unbatched request (0.74 of
a core at 5k requests/s, measured), which would starve the server under test. The TLS itself
is the same: TLS 1.3, mutual authentication, the site's certificate, TCP_NODELAY as trio sets.

The same client code runs against the real master and against :func:`serve_echo`, a trio TLS
server with the master's certificate that answers each Acquire with a Granted and each
Release with a Released of the sizes the master sends, and touches no ledger.

Run as a script, this module is the echo server:
``python benchmarks/_wire_load.py echo --data-dir D`` prints ``echo serving HOST:PORT``.
"""

from __future__ import annotations

import argparse
import math
import os
import selectors
import socket
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Run as a script, this folder is first on sys.path, and its ledger.py (the ledger benchmark)
# would shadow the ledger package: take the repository's root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import attrs  # noqa: E402
import trio  # noqa: E402

from transport import (  # noqa: E402
    NEED_DATA,
    Acquire,
    Connection,
    FrameReader,
    Goodbye,
    Granted,
    Hello,
    Refused,
    Release,
    Released,
    Role,
    Sync,
    SyncDone,
    Welcome,
    decode_message,
    encode_message,
    frame,
)
from transport.tls import client_context, server_context  # noqa: E402

AGENT_CLASS = "PRED"
_ANSWERS = (Granted, Refused, Released)
_clock = time.perf_counter


@attrs.frozen
class Site:
    """A site's credentials, as plain strings so that they pickle to worker processes."""

    name: str
    ca_pem: str
    cert_pem: str
    key_pem: str


class Link:
    """One site's connection to a server, after Hello/Welcome and Sync/SyncDone.

    Non-blocking after :meth:`open`: :meth:`queue` adds a request to the output buffer,
    :meth:`flush` writes what the socket takes, :meth:`read` feeds what arrived to the core.
    """

    def __init__(self, site: str, sock: ssl.SSLSocket, conn: Connection):
        self.site = site
        self.sock = sock
        self.conn = conn
        self.next_id = 1
        self.out = bytearray()
        self.blocked = False  # the last flush hit a full socket buffer
        # Per-link load state (see the loops below).
        self.pending: dict[int, Any] = {}

    @classmethod
    def open(cls, site: Site, host: str, port: int) -> Link:
        context = client_context(site.ca_pem, site.cert_pem, site.key_pem)
        raw = socket.create_connection((host, port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = context.wrap_socket(raw, server_hostname=host)
        conn = Connection(Role.CLIENT)
        link = cls(site.name, sock, conn)
        sock.sendall(conn.send(Hello(site.name, 1)))
        welcome = link.next_blocking()
        if not isinstance(welcome, Welcome):
            raise RuntimeError(f"{site.name}: expected Welcome, got {welcome!r}")
        sock.sendall(conn.send(Sync((), (), False)))
        done = link.next_blocking()
        if not isinstance(done, SyncDone):
            raise RuntimeError(f"{site.name}: expected SyncDone, got {done!r}")
        sock.setblocking(False)
        return link

    def next_blocking(self) -> Any:
        while (event := self.conn.next_event()) is NEED_DATA:
            self.conn.receive_data(self.sock.recv(65536))
        return event

    def queue(self, message_type: type, user: str, tag: Any) -> None:
        rid = self.next_id
        self.next_id += 1
        if message_type is Acquire:
            self.out += self.conn.send(Acquire(rid, user, AGENT_CLASS))
        else:
            self.out += self.conn.send(Release(rid, user))
        self.pending[rid] = tag

    def flush(self) -> None:
        out = self.out
        try:
            while out:
                # Only ever appended to between retries, as OpenSSL's write retry requires.
                del out[:self.sock.send(out)]
            self.blocked = False
        except ssl.SSLWantWriteError:
            self.blocked = True

    def read(self) -> None:
        try:
            while True:
                data = self.sock.recv(262144)
                if not data:
                    raise ConnectionError(f"{self.site}: server closed the connection")
                self.conn.receive_data(data)
        except ssl.SSLWantReadError:
            pass

    def answers(self) -> Any:
        """The answers received so far, as (request tag, answer)."""
        conn, pending = self.conn, self.pending
        while (event := conn.next_event()) is not NEED_DATA:
            if isinstance(event, _ANSWERS):
                yield pending.pop(event.request_id), event
            # Heartbeat and Notice need no answer.

    def close(self) -> None:
        self.sock.setblocking(True)
        self.sock.settimeout(2)
        try:
            self.sock.sendall(self.out + self.conn.send(Goodbye("benchmark done")))
        except OSError:
            pass
        self.sock.close()


class Loop:
    """A selector over links: wait for readable (or writable, if blocked) sockets."""

    def __init__(self, links: list[Link]):
        self.links = links
        self.selector = selectors.DefaultSelector()
        for link in links:
            self.selector.register(link.sock, selectors.EVENT_READ, link)
        self._write_wanted: set[Link] = set()

    def flush(self, link: Link) -> None:
        link.flush()
        wants = link.blocked
        if wants != (link in self._write_wanted):
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if wants else 0)
            self.selector.modify(link.sock, events, link)
            (self._write_wanted.add if wants else self._write_wanted.discard)(link)

    def wait(self, timeout: float | None) -> list[Link]:
        ready = []
        for key, events in self.selector.select(timeout):
            link: Link = key.data
            if events & selectors.EVENT_WRITE:
                self.flush(link)
            if events & selectors.EVENT_READ:
                link.read()
                ready.append(link)
        return ready

    def drain(self, timeout: float = 30) -> None:
        """Flush everything and wait until every request has its answer."""
        deadline = _clock() + timeout
        for link in self.links:
            self.flush(link)
        while any(link.pending for link in self.links):
            if _clock() > deadline:
                raise TimeoutError("answers missing after the run")
            for link in self.wait(0.5):
                for _ in link.answers():
                    pass

    def close(self) -> None:
        self.selector.close()


@attrs.define
class Tally:
    """What one process saw in the measured window."""

    answered: int = 0
    refused: int = 0
    sent: int = 0
    late_sends: int = 0
    drain: float = 0.0
    latencies: list[float] = attrs.Factory(list)


# --------------------------------------------------------------------- closed loop
def closed_loop(loop: Loop, window: int, t_measure: float, t_end: float, tally: Tally) -> None:
    """Keep ``window`` requests in flight per link: each user acquires, releases, acquires...

    Each reply is answered at once with that user's next request; a link's replies read
    together go out together, in one TLS record. Stops sending at ``t_end``, drains, and
    releases the seats still held.
    """
    users = [f"u{i}" for i in range(window)]
    held = {link: [False] * window for link in loop.links}
    now = _clock()
    for link in loop.links:
        for slot in range(window):
            link.queue(Acquire, users[slot], (slot, now))
        loop.flush(link)
    latencies = tally.latencies
    deadline = t_end + 30
    while now < t_end or any(link.pending for link in loop.links):
        if now > deadline:
            raise TimeoutError("answers missing after the run")
        for link in loop.wait(0.5):
            now = _clock()
            measuring = t_measure <= now < t_end
            seats = held[link]
            for (slot, sent_at), answer in link.answers():
                if isinstance(answer, Granted):
                    seats[slot] = True
                elif isinstance(answer, Released):
                    seats[slot] = False
                else:
                    tally.refused += 1
                if measuring:
                    tally.answered += 1
                    latencies.append(now - sent_at)
                if now < t_end:
                    link.queue(Release if seats[slot] else Acquire, users[slot], (slot, now))
            loop.flush(link)
        now = _clock()
    for link in loop.links:
        for slot, seated in enumerate(held[link]):
            if seated:
                link.queue(Release, users[slot], None)
    loop.drain()


# --------------------------------------------------------------------- open loop
def open_loop(loop: Loop, rate: float, t_start: float, t_measure: float, t_end: float,
              tally: Tally) -> None:
    """Send at ``rate`` requests/s over all links, round robin, whatever the answers do.

    Latency counts from each request's scheduled time, not from when it went out, so a
    stalled sender cannot hide queueing (no coordinated omission). Each link alternates
    log-ons of fresh users with log-offs of its oldest seated user.
    """
    links = loop.links
    free = {link: deque(f"u{i}" for i in range(4000)) for link in links}
    seated: dict[Link, deque[str]] = {link: deque() for link in links}
    interval = 1.0 / rate
    k = 0
    latencies = tally.latencies
    while True:
        scheduled = t_start + k * interval
        if scheduled >= t_end:
            break
        now = _clock()
        timeout = scheduled - now
        for link in loop.wait(timeout if timeout > 0 else 0):
            now = _clock()
            for (user, sent_at), answer in link.answers():
                if isinstance(answer, Granted):
                    seated[link].append(user)
                else:
                    tally.refused += isinstance(answer, Refused)
                    free[link].append(user)
                if sent_at >= t_measure:
                    tally.answered += 1
                    latencies.append(now - sent_at)
        now = _clock()
        touched = set()
        while scheduled <= now and scheduled < t_end:
            link = links[k % len(links)]
            if seated[link] and (k // len(links)) % 2:
                user = seated[link].popleft()
                link.queue(Release, user, (user, scheduled))
            else:
                user = free[link].popleft()
                link.queue(Acquire, user, (user, scheduled))
            tally.sent += 1
            if now - scheduled > 0.001:
                tally.late_sends += 1
            touched.add(link)
            k += 1
            scheduled = t_start + k * interval
        for link in touched:
            loop.flush(link)
    deadline = _clock() + 30
    while any(link.pending for link in links):
        if _clock() > deadline:
            raise TimeoutError("answers missing after the run")
        for link in loop.wait(0.5):
            now = _clock()
            for (user, sent_at), answer in link.answers():
                if isinstance(answer, Granted):
                    seated[link].append(user)
                if sent_at >= t_measure:
                    tally.answered += 1
                    latencies.append(now - sent_at)
    # How long the last answers took to arrive after the last send: well above the p50,
    # the server could not keep up with the offered rate and its queue grew all run long.
    tally.drain = max(0.0, _clock() - t_end)
    for link in links:
        for user in seated[link]:
            link.queue(Release, user, None)
    loop.drain()


# --------------------------------------------------------------------- entry points
@attrs.frozen
class LoadSpec:
    host: str
    port: int
    sites: list[Site]
    mode: str  # "closed" or "open"
    warmup: float
    duration: float
    window: int = 16  # closed loop: requests in flight per link
    rate: float = 0.0  # open loop: requests per second from this process
    start_wall: float | None = None  # several processes start together at this time.time()
    probe_pid: int | None = None  # the server, whose CPU use is sampled (by one process)


def run_load(spec: LoadSpec) -> dict[str, Any]:
    """Run one load phase in this process; return its tally as plain data.

    CPU use is sampled over the measured window only, from a side thread: this process's,
    and, if ``spec.probe_pid`` is set, the server's and the whole machine's.
    """
    links = [Link.open(site, spec.host, spec.port) for site in spec.sites]
    loop = Loop(links)
    t0 = _clock() + 0.2
    if spec.start_wall is not None:
        t0 = _clock() + max(0.0, spec.start_wall - time.time())
    time.sleep(max(0.0, t0 - _clock()))
    t_measure = t0 + spec.warmup
    t_end = t_measure + spec.duration
    samples: list[tuple[float, float, float, float]] = []

    def sample_window() -> None:
        for at in (t_measure, t_end):
            time.sleep(max(0.0, at - _clock()))
            samples.append((_clock(), time.process_time(),
                            cpu_seconds(spec.probe_pid) if spec.probe_pid else 0.0,
                            machine_busy_seconds()))

    sampler = threading.Thread(target=sample_window, daemon=True)
    sampler.start()
    tally = Tally()
    if spec.mode == "closed":
        closed_loop(loop, spec.window, t_measure, t_end, tally)
    else:
        open_loop(loop, spec.rate, t0, t_measure, t_end, tally)
    sampler.join()
    loop.close()
    for link in links:
        link.close()
    (w0, own0, server0, busy0), (w1, own1, server1, busy1) = samples
    return {"answered": tally.answered, "refused": tally.refused, "sent": tally.sent,
            "late_sends": tally.late_sends, "drain_seconds": tally.drain,
            "latencies": tally.latencies,
            "seconds": spec.duration, "loadgen_cpu_cores": (own1 - own0) / (w1 - w0),
            "server_cpu_cores": (server1 - server0) / (w1 - w0),
            "machine_cpu_cores": (busy1 - busy0) / (w1 - w0)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time spent by everything on the machine (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def hold_seats(sites: list[Site], host: str, port: int, per_site: int,
               while_held: Callable[[], Any]) -> Any:
    """Connect every site, have each acquire ``per_site`` seats, call ``while_held()``,
    then release them all and leave. Returns what ``while_held`` returned."""
    links = [Link.open(site, host, port) for site in sites]
    loop = Loop(links)
    refused = 0
    for link in links:
        for i in range(per_site):
            link.queue(Acquire, f"held{i}", None)
    deadline = _clock() + 60
    for link in links:
        loop.flush(link)
    while any(link.pending for link in links):
        if _clock() > deadline:
            raise TimeoutError("grants missing")
        for link in loop.wait(0.5):
            refused += sum(isinstance(answer, Refused) for _, answer in link.answers())
    if refused:
        raise RuntimeError(f"{refused} acquires refused while filling seats")
    result = while_held()
    for link in links:
        for i in range(per_site):
            link.queue(Release, f"held{i}", None)
    loop.drain()
    loop.close()
    for link in links:
        link.close()
    return result


def first_grant(site: Site, host: str, port: int) -> None:
    """One site connects, syncs and is granted one seat (then releases it)."""
    link = Link.open(site, host, port)
    link.sock.setblocking(True)
    link.queue(Acquire, "first", None)
    link.sock.sendall(link.out)
    link.out.clear()
    while not isinstance(answer := link.next_blocking(), _ANSWERS):
        pass
    if not isinstance(answer, Granted):
        raise RuntimeError(f"first acquire not granted: {answer!r}")
    link.pending.clear()
    link.queue(Release, "first", None)
    link.sock.sendall(link.out)
    link.out.clear()
    while not isinstance(link.next_blocking(), _ANSWERS):
        pass
    link.close()


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


# --------------------------------------------------------------------- the echo server
async def _echo_site(stream: trio.SSLStream[Any]) -> None:
    """Answer like the master, without the ledger: same framing, message types and sizes."""
    reader = FrameReader()
    try:
        await stream.do_handshake()
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            reader.feed(data)
            out = []
            while (payload := reader.next_payload()) is not None:
                message = decode_message(payload)
                if isinstance(message, Acquire):
                    # The master's seat ids are seat numbers, up to the pool's size.
                    answer: Any = Granted(message.request_id, str(message.request_id % 20000 + 1))
                elif isinstance(message, Release):
                    answer = Released(message.request_id, message.user)
                elif isinstance(message, Hello):
                    answer = Welcome(f"{message.site}-1", 10.0, {})
                elif isinstance(message, Sync):
                    answer = SyncDone(0, 0, 0)
                elif isinstance(message, Goodbye):
                    return
                else:
                    continue
                out.append(frame(encode_message(answer)))
            if out:
                await stream.send_all(b"".join(out))
    except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def serve_echo(data_dir: Path, host: str, port: int) -> None:
    """Serve the echo protocol until SIGTERM/SIGINT."""
    import signal

    ca = data_dir / "ca"
    context = server_context(ca / "ca.crt", ca / "master.crt", ca / "master.key")

    async def handler(tcp: trio.SocketStream) -> None:
        await _echo_site(trio.SSLStream(tcp, context, server_side=True))

    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, handler, listeners)
            print(f"echo serving {bound[0]}:{bound[1]}", flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description="the bare TLS echo server of benchmarks/wire.py")
    sub = parser.add_subparsers(dest="command", required=True)
    echo = sub.add_parser("echo", help="run the bare TLS echo server")
    echo.add_argument("--data-dir", type=Path, required=True)
    echo.add_argument("--listen", default="127.0.0.1:0")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    trio.run(serve_echo, args.data_dir, host, int(port))


if __name__ == "__main__":
    main()
