"""Wire benchmark: a real `seatledger master` process served over mutual TLS on 127.0.0.1.

Prints one JSON object. Phases, in one run:

1. ``master``: 50 sites (one TLS 1.3 connection each) pipelining a window of requests
   (closed loop: each user acquires, releases, acquires...) against a `seatledger master`
   subprocess on the SQLite store (AES-GCM at rest, WAL, synchronous=FULL, group commit).
   Grants + releases answered per second, p50 / p99 latency from send to answer.
   ``master_window_1``: the same with one request in flight per site (small batches).
2. ``bare_tls`` (and ``bare_tls_window_1``): the same client code against a trio TLS echo
   server process (same certificates, framing, message types and sizes; no ledger): the
   machine's ceiling, and the ratios.
3. ``open_loop``: requests sent at a fixed offered rate (default 5k/s, half acquires, half
   releases) regardless of answers, latency from each request's scheduled send time (no
   coordinated omission); ``bare_tls_open_loop`` is the same load on the echo server.
   ``open_loop_200_sites``: the same open loop at a low rate over many links (default
   500 req/s over 200 sites, so 2.5 req/s per link: small batches, many connections; the
   goal is a p99 of 5 ms); ``bare_tls_open_loop_200_sites`` is that load on the echo server.
4. ``ready``: the store grown to 1.8M events in-process (batches of 1000 commands through
   ``LedgerApp.execute``) and its read models brought level, then the time from spawning
   `seatledger master` to its "serving" line and to a first grant over a fresh mTLS
   connection.
5. ``rss``: that master's VmRSS with 10,000 seats held over 100 connected sites.
6. ``grant_cost``: the ledger's cost per grant or release in-process with 10,000 seats held
   over 100 sites with local limits, against 100 seats held (the ratio's goal: 1.2).

The load generator runs in this process (one selectors loop) by default; ``--load-procs N``
splits the links over N processes. The machine has 2 cores shared by the master (event loop
plus its commit thread, one GIL), the load generator and, in phase 2, the echo server.
The master has 200 sites enrolled (the most any phase connects); the closed-loop phases and
``open_loop`` use the first ``--sites`` (50), ``rss`` the first 100.

Usage: python benchmarks/wire.py [--quick] [--load-procs N] [--window W] [--keep]
       [--sites N] [--rate R] [--wide-sites N] [--wide-rate R]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import multiprocessing
import os
import platform
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# A script in benchmarks/ puts benchmarks/ first on the import path, where ledger.py would
# shadow the ledger package: drop the folder and load the helper module from its file.
_HERE = Path(__file__).parent.resolve()
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]


def _load_helper() -> Any:
    if "_wire_load" not in sys.modules:  # registered by name so that worker processes unpickle
        spec = importlib.util.spec_from_file_location("_wire_load", _HERE / "_wire_load.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["_wire_load"] = module
        spec.loader.exec_module(module)
    return sys.modules["_wire_load"]


_wire_load = _load_helper()
LoadSpec, Site = _wire_load.LoadSpec, _wire_load.Site
machine_busy_seconds = _wire_load.machine_busy_seconds
first_grant, hold_seats = _wire_load.first_grant, _wire_load.hold_seats
percentile, run_load = _wire_load.percentile, _wire_load.run_load


from ledger import AcquireSeat, ReleaseSeat  # noqa: E402
from ledger.domain.licence import LICENCE_ID  # noqa: E402
from projections import ProjectionRunner  # noqa: E402
from seatledger.config.bundle import Bundle  # noqa: E402
from seatledger.config.settings import load_config  # noqa: E402
from seatledger.config.store import open_ledger  # noqa: E402
from seatledger.services.sites import enrol_site  # noqa: E402

SITES = 100  # the sites that hold seats in 'rss' and that 'ready' grows the store over
WIDE_SITES, WIDE_RATE = 200, 500.0  # open_loop_200_sites: links and offered requests/s
SEATS = "PRED=20000,ACD=100"
# The issue's goals: 16 in flight per site at 35 % of the echo's rate, one in flight at 50 %.
TARGETS = {"grants_releases_per_second": 10_000, "ratio_to_bare_tls": 0.35,
           "ratio_to_bare_tls_window_1": 0.5,
           "p99_ms_at_5k_per_second": 10.0, "p99_ms_at_500_per_second_200_sites": 5.0,
           "ready_seconds_over_1.8M_events": 2.0,
           "rss_mb_10k_seats_100_sites": 200, "grant_cost_ratio_10k_to_100_seats": 1.2}


def seatledger_command() -> list[str]:
    exe = shutil.which("seatledger")
    return [exe] if exe else [sys.executable, "-c", "import sys; from seatledger.cli import main;"
                                                    " sys.exit(main())"]


def cli(*args: str) -> None:
    subprocess.run(seatledger_command() + list(args), check=True, stdout=subprocess.DEVNULL)


class Server:
    """A server subprocess that prints '... serving HOST:PORT' once it is ready."""

    def __init__(self, argv: list[str], log: Path, ready_timeout: float = 120):
        self.started = time.perf_counter()
        self.log = log.open("w")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.host, self.port = self._wait_ready(ready_timeout)
        self.ready_seconds = time.perf_counter() - self.started

    def _wait_ready(self, timeout: float) -> tuple[str, int]:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                self.proc.kill()
                raise RuntimeError(f"{self.proc.args} not ready after {timeout}s")
        line = self.proc.stdout.readline()
        if "serving" not in line:
            self.proc.wait()
            raise RuntimeError(f"{self.proc.args} failed (see {self.log.name}): {line!r}")
        host, _, port = line.split()[-1].rpartition(":")
        return host, int(port)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.log.close()
        return code


def set_writer(data: Path, mode: str) -> None:
    """Set ``[master] writer`` in the data directory's configuration."""
    config = data / "seatledger.toml"
    text = config.read_text()
    config.write_text(text.replace("[master]\n", f'[master]\nwriter = "{mode}"\n', 1))


def writer_processes(parent: int) -> list[int]:
    """The pids of ``parent``'s ledger writer processes."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit():
                continue
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == parent and b"ledger_writer" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM etc. of a process, in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Vm"):
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0])
    return out


def calibration_ms() -> float:
    """A fixed pure-Python loop, best of three, in ms: this VM's speed drifts by up to
    +-35 % between minutes (noisy neighbours), so each phase records it just before."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        x = 0
        for i in range(300_000):
            x += i * i % 7
        best = min(best, time.process_time() - start)
    return round(best * 1e3, 1)


def load(specs: list[LoadSpec]) -> dict[str, Any]:
    """Run load phases (one per process) together; merge their tallies."""
    calibration = calibration_ms()
    if len(specs) == 1:
        parts = [run_load(specs[0])]
    else:
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(len(specs), mp_context=ctx) as pool:
            parts = list(pool.map(run_load, specs))
    latencies = sorted(x for p in parts for x in p["latencies"])
    answered = sum(p["answered"] for p in parts)
    seconds = specs[0].duration
    server = parts[0]["server_cpu_cores"]
    loadgen = sum(p["loadgen_cpu_cores"] for p in parts)
    result = {
        "requests_per_second": round(answered / seconds),
        "p50_ms": round(percentile(latencies, 50) * 1e3, 2),
        "p99_ms": round(percentile(latencies, 99) * 1e3, 2),
        "p999_ms": round(percentile(latencies, 99.9) * 1e3, 2),
        "max_ms": round(latencies[-1] * 1e3, 2) if latencies else None,
        "refused": sum(p["refused"] for p in parts),
        # CPU over the measured window, in cores (of 2).
        "server_cpu_cores": round(server, 2),
        "loadgen_cpu_cores": round(loadgen, 2),
        "late_sends": sum(p["late_sends"] for p in parts),
        # Everything else on this shared machine (other users' jobs, the kernel).
        "other_cpu_cores": round(max(0.0, parts[0]["machine_cpu_cores"] - server - loadgen), 2),
        "calibration_ms": calibration,
    }
    if specs[0].mode == "open":
        result["drain_ms"] = round(max(p["drain_seconds"] for p in parts) * 1e3, 1)
    return result


def split(sites: list[Site], procs: int, server: Server, **spec: Any) -> list[LoadSpec]:
    start = time.time() + (2.0 if procs > 1 else 0.0)  # time for the workers to spawn
    groups = [sites[i::procs] for i in range(procs)]
    rate = spec.pop("rate", 0.0)
    return [LoadSpec(sites=g, host=server.host, port=server.port,
                     start_wall=start if procs > 1 else None, rate=rate * len(g) / len(sites),
                     probe_pid=server.pid if i == 0 else None, **spec)
            for i, g in enumerate(groups)]


def build_store(config: Any, names: list[str], target: int) -> dict[str, Any]:
    """Grow the store to ``target`` records with batches of 1000 acquires and releases."""
    app = open_ledger(config)
    start_id = app.max_id()
    start = time.perf_counter()
    agents = 4000
    held: set[int] = set()
    n = 0
    while app.max_id() < target:
        commands: list[Any] = []
        for _ in range(1000):
            user = n % agents
            site = names[user % len(names)]
            if user in held:
                commands.append(ReleaseSeat(site, f"agent{user}"))
                held.discard(user)
            else:
                commands.append(AcquireSeat(site, f"agent{user}", "PRED",
                                            f"tenant{user % 3}", f"campaign{user % 7}"))
                held.add(user)
            n += 1
        app.execute(commands)
    app.execute([ReleaseSeat(names[u % len(names)], f"agent{u}") for u in sorted(held)])
    seconds = time.perf_counter() - start
    total = app.max_id()
    # What a starting master reads besides the snapshot: the events after it, and the seal.
    snapshots = app._app.snapshots
    latest = list(snapshots.get(LICENCE_ID, desc=True, limit=1)) if snapshots else []
    tail = app.licence.version - (latest[0].originator_version if latest else 0)
    seal_rows = len(app.recorder.read_seal()[0])
    # A master keeps its read models current as it commits; bring them level with what was
    # built here, or the master under test would spend its first minute catching up.
    start = time.perf_counter()
    runner = ProjectionRunner(app)
    try:
        runner.run_once()
    finally:
        runner.close()
    catch_up = time.perf_counter() - start
    app.close()
    return {"store_events": total, "built_events": total - start_id,
            "build_seconds": round(seconds, 1),
            "build_events_per_second": round((total - start_id) / seconds),
            "read_models_catch_up_seconds": round(catch_up, 1),
            "events_after_latest_snapshot": tail, "seal_checkpoint_rows": seal_rows}


def grant_cost(tmp: Path, held: int, commands: int = 4000) -> dict[str, Any]:
    """The ledger's cost per grant or release (decide, encode, seal, commit; batches of 10,
    the size a lightly loaded master commits) with ``held`` seats held over 100 sites that
    each have a local limit: what a grant costs must not grow with the seats held."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ledger import LedgerApp, ManualClock

    clock = ManualClock()
    app = LedgerApp(f"sqlite:///{tmp}/grant-cost-{held}.db", key=os.urandom(32),
                    signing_key=Ed25519PrivateKey.generate(), clock=clock)
    try:
        app.issue_licence(customer="Bench", limits={"PRED": held + 1000, "ACD": 100})
        names = [f"site{i:03d}" for i in range(100)]
        for name in names:
            app.enrol_site(name, local_limits={"PRED": held // 100 + 100})
        for first in range(0, held, 1000):
            app.execute([AcquireSeat(names[i % 100], f"held{i}", "PRED")
                         for i in range(first, min(held, first + 1000))])
        start, cpu = time.perf_counter(), time.process_time()
        for first in range(0, commands, 10):
            clock.advance(seconds=1)
            app.execute([AcquireSeat(names[i % 100], f"x{i // 2}", "PRED") if i % 2 == 0
                         else ReleaseSeat(names[i % 100], f"x{i // 2}")
                         for i in range(first, first + 10)])
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        app.close()
    # CPU is the cost compared: the wall time also holds each batch's fdatasync, whose
    # jitter on a shared disk is larger than the difference looked for.
    return {"seats_held": held, "sites": 100, "us_per_command": round(seconds / commands * 1e6, 1),
            "cpu_us_per_command": round(cpu / commands * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="short phases and a 300k-event store (about a minute)")
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--window", type=int, default=16, help="requests in flight per link")
    parser.add_argument("--load-procs", type=int, default=1)
    parser.add_argument("--rate", type=float, default=5000, help="open-loop offered req/s")
    parser.add_argument("--wide-sites", type=int, default=WIDE_SITES,
                        help="links of the open_loop_200_sites phases")
    parser.add_argument("--wide-rate", type=float, default=WIDE_RATE,
                        help="offered req/s of the open_loop_200_sites phases")
    parser.add_argument("--events", type=int, default=None, help="store size for 'ready'")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--writer", choices=("process", "thread"), default=None,
                        help="where the master commits ([master] writer; default: its default)")
    args = parser.parse_args()
    duration = args.duration or (4.0 if args.quick else 10.0)
    warmup = 1.0 if args.quick else 2.0
    events = args.events or (300_000 if args.quick else 1_800_000)

    busy0 = machine_busy_seconds()
    time.sleep(1)
    busy_before = machine_busy_seconds() - busy0
    tmp = Path(tempfile.mkdtemp(prefix="seatledger-wire-"))
    data = tmp / "data"
    result: dict[str, Any] = {
        "benchmark": "wire", "python": platform.python_version(), "cores": os.cpu_count(),
        "quick": args.quick,
        # The machine is shared: CPU others used just before the run (see also each phase's
        # other_cpu_cores); results taken while it is well above zero are not comparable.
        "machine_busy_cores_before": round(busy_before, 2),
        "setup": {"store": "sqlite file, AES-GCM, WAL, synchronous=FULL",
                  "transport": "TLS 1.3 mutual auth, 127.0.0.1, one connection per site",
                  "sites": args.sites, "window_per_link": args.window,
                  "in_flight": args.sites * args.window, "load_procs": args.load_procs,
                  "enrolled_sites": max(SITES, args.sites, args.wide_sites),
                  "load_generator": "selectors + non-blocking ssl.SSLSocket, protocol core "
                                    "transport.Connection, one process per --load-procs",
                  "warmup_seconds": warmup, "measured_seconds": duration,
                  "request": "Acquire(id, 'uN', 'PRED') / Release(id, 'uN'), alternating"},
    }
    master: Server | None = None
    try:
        # The vendor's side, then the customer's: a signed licence, installed.
        vendor = tmp / "vendor"
        cli("vendor", "init", "--vendor-dir", str(vendor), "--name", "Bench vendor")
        cli("vendor", "customer", "add", "--vendor-dir", str(vendor), "Bench")
        cli("init", "--data-dir", str(data), "--vendor-key",
            str(vendor / "keys" / "licence-signing.pub"))
        cli("licence", "request", "--data-dir", str(data), "--output", str(tmp / "req.json"))
        cli("vendor", "licence", "issue", "--vendor-dir", str(vendor), "--customer", "Bench",
            "--request", str(tmp / "req.json"), "--seats", SEATS,
            "--output", str(tmp / "bench.licence"))
        cli("licence", "install", "--data-dir", str(data), str(tmp / "bench.licence"))
        if args.writer is not None:
            set_writer(data, args.writer)
        config = load_config(data)
        result["setup"]["writer"] = config.writer
        app = open_ledger(config)
        names = [f"site{i:03d}" for i in range(max(SITES, args.sites, args.wide_sites))]
        sites = []
        for name in names:
            path = enrol_site(config, app, name, master="127.0.0.1:1",
                              output=tmp / "bundles" / f"{name}.bundle")
            b = Bundle.read(path)
            sites.append(Site(name, b.ca_pem, b.cert_pem, b.key_pem))
        app.close()
        # `--listen` refuses port 0: take a free port (closed again before the master binds).
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        serve = seatledger_command() + ["master", "--data-dir", str(data),
                                        "--listen", f"127.0.0.1:{port}"]
        common = {"warmup": warmup, "duration": duration}
        short = {"warmup": warmup / 2, "duration": duration / 2}
        links, wide_links = sites[:args.sites], sites[:args.wide_sites]

        def closed(server: Server, window: int, timing: dict[str, float]) -> dict[str, Any]:
            specs = split(links, args.load_procs, server, mode="closed", window=window, **timing)
            return {"window_per_link": window, **load(specs)}

        def paced(server: Server, over: list[Site], rate: float) -> dict[str, Any]:
            specs = split(over, args.load_procs, server, mode="open", rate=rate, **common)
            return {"offered_per_second": round(rate), "sites": len(over), **load(specs)}

        # 1 and 3: the real master.
        master = Server(serve, tmp / "master1.log")
        result["master"] = closed(master, args.window, common)
        result["open_loop"] = paced(master, links, args.rate)
        # One request in flight per site: the shape of the baseline table, small batches.
        result["master_window_1"] = closed(master, 1, short)
        # Many links at a low rate: each request mostly alone in its batch and its record.
        result["open_loop_200_sites"] = paced(master, wide_links, args.wide_rate)
        result["master_exit_code"] = master.stop()
        master = None

        # 2: the bare TLS ceiling: same client code and sizes, a trio echo server, no ledger.
        echo = Server([sys.executable, str(_HERE / "_wire_load.py"), "echo",
                       "--data-dir", str(data)], tmp / "echo.log")
        try:
            result["bare_tls"] = closed(echo, args.window, common)
            result["bare_tls_window_1"] = closed(echo, 1, short)
            result["bare_tls_open_loop"] = paced(echo, links, args.rate)
            result["bare_tls_open_loop_200_sites"] = paced(echo, wide_links, args.wide_rate)
        finally:
            echo.stop()
        result["ratio_to_bare_tls"] = round(result["master"]["requests_per_second"]
                                            / result["bare_tls"]["requests_per_second"], 3)
        result["ratio_to_bare_tls_window_1"] = round(
            result["master_window_1"]["requests_per_second"]
            / result["bare_tls_window_1"]["requests_per_second"], 3)

        # 4: ready over a large store.
        ready: dict[str, Any] = build_store(config, names[:SITES], events)
        ready["store_mb"] = round(sum(p.stat().st_size for p in data.glob("ledger.db*")) / 1e6)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import seatledger.cli, seatledger.daemons"],
                       check=True)
        ready["python_imports_seconds"] = round(time.perf_counter() - start, 3)
        master = Server(serve, tmp / "master2.log")
        ready["serving_seconds"] = round(master.ready_seconds, 3)
        first_grant(sites[0], master.host, master.port)
        ready["first_grant_seconds"] = round(time.perf_counter() - master.started, 3)
        result["ready"] = ready

        # 5: memory with 10k seats held over 100 sites.
        rss: dict[str, Any] = {"sites": SITES, "seats": 100 * SITES,
                               "idle_rss_mb": round(proc_status(master.pid)["VmRSS"] / 1024, 1)}

        def measure() -> None:
            time.sleep(0.5)
            status = proc_status(master.pid)  # type: ignore[union-attr]
            rss["rss_mb"] = round(status["VmRSS"] / 1024, 1)
            rss["peak_rss_mb"] = round(status["VmHWM"] / 1024, 1)
            writers = [proc_status(pid) for pid in writer_processes(master.pid)]  # type: ignore[union-attr]
            if writers:  # the master's writer process holds the ledger's copy of the state
                rss["writer_process_rss_mb"] = round(sum(w["VmRSS"] for w in writers) / 1024, 1)

        hold_seats(sites[:SITES], master.host, master.port, 100, measure)
        result["rss"] = rss
        result["master_exit_code_2"] = master.stop()
        master = None

        # 6: a grant's cost does not grow with the seats held (sites with local limits).
        few, many = grant_cost(tmp, 100), grant_cost(tmp, 10_000)
        result["grant_cost"] = {"few": few, "many": many, "ratio": round(
            many["cpu_us_per_command"] / few["cpu_us_per_command"], 3)}

        result["targets"] = TARGETS
        result["met"] = {
            "grants_releases_per_second": result["master"]["requests_per_second"]
            >= TARGETS["grants_releases_per_second"],
            "ratio_to_bare_tls": result["ratio_to_bare_tls"] >= TARGETS["ratio_to_bare_tls"],
            "ratio_to_bare_tls_window_1": result["ratio_to_bare_tls_window_1"]
            >= TARGETS["ratio_to_bare_tls_window_1"],
            "p99_ms_at_5k_per_second": result["open_loop"]["p99_ms"]
            <= TARGETS["p99_ms_at_5k_per_second"],
            # Met only at the issue's load (or more): 500 req/s offered over 200 sites.
            "p99_ms_at_500_per_second_200_sites": result["open_loop_200_sites"]["p99_ms"]
            <= TARGETS["p99_ms_at_500_per_second_200_sites"]
            and args.wide_rate >= WIDE_RATE and args.wide_sites >= WIDE_SITES,
            "ready_seconds_over_1.8M_events": ready["first_grant_seconds"]
            <= TARGETS["ready_seconds_over_1.8M_events"] and events >= 1_800_000,
            "rss_mb_10k_seats_100_sites": rss["rss_mb"] <= TARGETS["rss_mb_10k_seats_100_sites"],
            "grant_cost_ratio_10k_to_100_seats": result["grant_cost"]["ratio"]
            <= TARGETS["grant_cost_ratio_10k_to_100_seats"],
        }
    finally:
        if master is not None:
            master.stop()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
