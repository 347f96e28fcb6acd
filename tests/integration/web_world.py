"""A real master process with ``[web]`` and ``[metrics]`` listeners, a real slave process,
and plain HTTP(S) clients, for the dashboard, auth and metrics tests."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import trio

from seatledger.config.settings import load_config
from seatledger.config.store import open_ledger
from seatledger.services.datadir import init_data_dir
from seatledger.services.sites import enrol_site
from tests.processes import die_with_parent

CLI = [sys.executable, "-m", "seatledger.cli"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@attrs.frozen
class Deployment:
    root: Path
    port: int
    bundle: Path


def deploy(tmp_path: Path, settings: str, *, pred: int = 100, acd: int = 20) -> Deployment:
    """A data directory with a licence, the site ``north`` enrolled, and ``settings``
    (TOML tables) appended to its configuration."""
    root = tmp_path / "data"
    init_data_dir(root, history=False)
    config = load_config(root)
    port = free_port()
    with open_ledger(config) as app:
        app.issue_licence(customer="Acme", limits={"PRED": pred, "ACD": acd})
        bundle = enrol_site(config, app, "north", local_limits={"PRED": 60},
                            master=f"127.0.0.1:{port}", output=tmp_path / "north.bundle")
    with (root / "seatledger.toml").open("a", encoding="utf-8") as f:
        f.write("\n" + settings)
    return Deployment(root, port, bundle)


_logs: dict[int, Path] = {}  # each process's standard error


@contextmanager
def killed_at_exit(*argv: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A ``seatledger`` process (its standard error in ``log``), killed (SIGKILL) when the
    block ends, whatever happened."""
    with log.open("wb") as err:
        proc = subprocess.Popen([*CLI, *argv], stdout=subprocess.PIPE, stderr=err,
                                stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        _logs[proc.pid] = log
        try:
            yield proc
        finally:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


async def wait_for_line(proc: subprocess.Popen[bytes], text: bytes) -> None:
    """Wait until the process prints a line containing ``text`` on stdout."""
    assert proc.stdout is not None
    with trio.fail_after(60):
        line = await trio.to_thread.run_sync(proc.stdout.readline)
    if text not in line:
        proc.kill()
        proc.wait()
        raise AssertionError(line + _logs[proc.pid].read_bytes())


@contextmanager
def master(deployment: Deployment) -> Iterator[subprocess.Popen[bytes]]:
    with killed_at_exit("master", "--data-dir", str(deployment.root), "--listen",
                        f"127.0.0.1:{deployment.port}",
                        log=deployment.root.parent / "master.log") as proc:
        yield proc


@contextmanager
def slave(deployment: Deployment, state_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    with killed_at_exit("slave", "--bundle", str(deployment.bundle), "--state-dir",
                        str(state_dir), "--retry", "1s", "--attempts", "100000",
                        "--cutoff-retry", "1s",
                        log=deployment.root.parent / "slave.log") as proc:
        yield proc


def seat(state_dir: Path, *argv: str) -> str:
    """``seatledger seat ...`` through a slave's local socket; its standard output."""
    done = subprocess.run([*CLI, "seat", *argv, "--state-dir", str(state_dir)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return done.stdout


def get(host: str, port: int, path: str, *, context: ssl.SSLContext | None = None,
        token: str | None = None) -> tuple[int, bytes]:
    """One GET over HTTP (or HTTPS with ``context``): (status, body)."""
    conn: http.client.HTTPConnection
    if context is None:
        conn = http.client.HTTPConnection(host, port, timeout=10)
    else:
        conn = http.client.HTTPSConnection(host, port, timeout=10, context=context)
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
