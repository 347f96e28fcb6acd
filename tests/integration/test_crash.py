"""A real `seatledger master` process, killed with SIGKILL under load and restarted, several
times: every grant a site saw acknowledged is in the ledger, and the seal still verifies."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import trio

from seatledger.config.bundle import Bundle
from seatledger.config.settings import load_config
from seatledger.config.store import open_ledger
from seatledger.services.datadir import init_data_dir
from seatledger.services.sites import enrol_site
from tests.processes import die_with_parent
from transport import NEED_DATA, Acquire, Connection, Granted, Hello, Role, Sync, SyncDone, Welcome
from transport.tls import client_context

SITES = ("north", "south", "east")
ROUNDS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_master(root: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "seatledger.cli", "master", "--data-dir",
                             str(root), "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=die_with_parent)
    assert proc.stdout is not None
    line = await trio.to_thread.run_sync(proc.stdout.readline)
    assert b"serving" in line, line + (proc.stderr.read() if proc.stderr else b"")
    return proc


async def load(bundle: Bundle, port: int, prefix: str, acknowledged: set[tuple[str, str]]) -> None:
    """Pipeline acquires for fresh users until the connection breaks; note each Granted."""
    ctx = client_context(bundle.ca_pem.encode(), bundle.cert_pem.encode(), bundle.key_pem.encode())
    try:
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        stream = trio.SSLStream(tcp, ctx, server_hostname="127.0.0.1")
        conn = Connection(Role.CLIENT)
        await stream.send_all(conn.send(Hello(bundle.site, 1)))
        users: dict[int, str] = {}

        async def next_event() -> object:
            while (event := conn.next_event()) is NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            return event

        assert isinstance(await next_event(), Welcome)
        await stream.send_all(conn.send(Sync((), (), False)))
        while not isinstance(await next_event(), SyncDone):
            pass
        request = 0
        while True:
            burst = []
            for _ in range(20):
                request += 1
                users[request] = f"{prefix}-{request}"
                burst.append(conn.send(Acquire(request, users[request], "PRED")))
            await stream.send_all(b"".join(burst))
            answered = 0
            while answered < 20:
                event = await next_event()
                if isinstance(event, Granted):
                    acknowledged.add((bundle.site, users[event.request_id]))
                    answered += 1
                elif hasattr(event, "request_id"):
                    answered += 1
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, Exception):
        return


async def test_acknowledged_grants_survive_sigkill(tmp_path: Path) -> None:
    root = tmp_path / "data"
    init_data_dir(root, history=False)
    config = load_config(root)
    app = open_ledger(config)
    app.issue_licence(customer="Acme", limits={"PRED": 100_000, "ACD": 100})
    port = free_port()
    bundles = {}
    for site in SITES:
        path = enrol_site(config, app, site, master=f"127.0.0.1:{port}",
                          output=tmp_path / f"{site}.bundle")
        bundles[site] = Bundle.read(path)
    app.close()

    acknowledged: set[tuple[str, str]] = set()
    for round_ in range(ROUNDS):
        master = await start_master(root, port)
        try:
            async with trio.open_nursery() as nursery:
                for site in SITES:
                    nursery.start_soon(load, bundles[site], port, f"r{round_}", acknowledged)
                await trio.sleep(1.0)
                os.kill(master.pid, signal.SIGKILL)
        finally:
            master.kill()
            master.wait()
    assert len(acknowledged) > 100, "the load never got going"

    # A last, clean start and stop: the ledger opens after the crashes and shuts down cleanly;
    # meanwhile its read-model follower brings `seatledger status` level with the ledger.
    master = await start_master(root, port)
    # The master's own follower (no command here runs the projections) catches the read
    # models up with every record.
    positions: set[int] = set()
    top = -1
    with trio.move_on_after(60):
        while positions != {top}:
            await trio.sleep(0.5)
            with sqlite3.connect(f"file:{root / 'ledger.db'}?mode=ro", uri=True) as db:
                top = db.execute("SELECT MAX(id) FROM events").fetchone()[0]
            try:  # the read models' own file, beside the ledger's
                with sqlite3.connect(f"file:{root / 'ledger.views.db'}?mode=ro",
                                     uri=True) as views:
                    positions = {r[0] for r in views.execute(
                        "SELECT position FROM view_tracking")}
            except sqlite3.OperationalError:  # the views do not exist yet
                positions = set()
    assert positions == {top}, f"read models at {positions}, ledger at {top}"
    readings: list[int] = []
    with trio.move_on_after(60):
        while len(readings) < 3 or len(set(readings[-3:])) > 1:
            await trio.sleep(0.5)
            proc = subprocess.run([sys.executable, "-m", "seatledger.cli", "status", "--json",
                                   "--data-dir", str(root)], capture_output=True, text=True)
            if proc.returncode == 0:
                status = json.loads(proc.stdout)["status"]
                readings.append(next(p["in_use"] for p in status["pools"]
                                     if p["pool"] == "PRED"))
    master.send_signal(signal.SIGTERM)
    assert master.wait(timeout=30) == 0
    # The status view is kept by the master's follower: it agrees with the ledger's state.
    assert readings and readings[-1] == open_ledger(config).licence.pools["PRED"].in_use

    app = open_ledger(config, read_only=True)
    granted = {(e.site, e.user) for _, e in app.events() if type(e).__name__ == "SeatGranted"}
    missing = acknowledged - granted
    assert not missing, f"{len(missing)} acknowledged grants are not in the ledger"
    report = app.verify()
    assert report.ok, report.problem
    proc = subprocess.run([sys.executable, "-m", "seatledger.cli", "audit", "verify",
                           "--data-dir", str(root)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
