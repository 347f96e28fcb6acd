"""How long the command line takes to start: ``--help`` and the dialler's seat commands.

Prints one JSON object. Each figure is the wall time of a whole process (median and min of
``--runs`` runs, after one warm-up run), started two ways:

* ``script``: the installed console script, resolved with :func:`shutil.which` in the
  directory of this interpreter (the environment's own script, as a dialler would call it);
* ``module``: ``sys.executable -m seatledger.cli``.

If ``seatledger`` on ``PATH`` is another file (a version manager's shim), it is timed too as
``path_script``, for information only: the shim's own start-up is not the command line's.
``python_c_pass`` is the interpreter's own start-up (with this environment's ``.pth`` files),
the floor under every figure.
Every run imports this checkout's code (``PYTHONPATH`` is set to it), whichever directory the
editable install points at.

The commands: ``seatledger --help``, ``seatledger status --help``, ``seat list`` and
``seat acquire`` with no slave running (the "no slave is running" error, exit 1), against a
fake slave (a stdlib thread answering on a Unix socket, so only the client is timed), and
``seat list`` against a real ``seatledger slave`` (cut off: no master runs; ``--no-real-slave``
skips it). Each result says whether its median meets the target; ``all_meet_target`` is over
all of them: the seat commands, ``--help`` and a command group's ``--help`` (``status``,
whose handlers load the ledger and the read models: its parser must not).
Timed runs use the bytecode cache, as an installation does, even where the caller's
environment turned it off (``bytecode_cache_off_in_caller``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path[:] = [str(Path(__file__).resolve().parent.parent)] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from transport.local_client import receive_line  # noqa: E402  (stdlib only)

TARGET_MS = 150.0
SLAVE_START_TIMEOUT = 60.0
CHECKOUT = Path(__file__).resolve().parent.parent
# An installed command line runs from its compiled bytecode (pip compiles it when it
# installs; Python caches it on first import): a PYTHONDONTWRITEBYTECODE in the caller's
# environment (this project's sandbox sets it) would make every timed run compile every
# module from source instead, which no installation does. The warm-up run writes the cache.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHECKOUT), os.environ.get("PYTHONPATH")]))
BYTECODE_OFF_BY_CALLER = "PYTHONDONTWRITEBYTECODE" in os.environ

_FAKE_SEATS = [
    {"user": "u1", "class": "PRED", "tenant": "t", "campaign": "c", "seat": "s-1",
     "status": "normal"},
    {"user": "u2", "class": "ACD", "tenant": "t", "campaign": "c", "seat": "s-2",
     "status": "normal"},
]


def _fake_answer(request: dict[str, Any]) -> dict[str, Any]:
    if request.get("op") == "list":
        return {"ok": True, "state": "online", "master": "127.0.0.1:7443", "seats": _FAKE_SEATS}
    if request.get("op") == "acquire":
        return {"ok": True, "user": request.get("user"), "class": request.get("class"),
                "seat": "s-3", "status": "normal", "deadline": None}
    return {"ok": True}


@contextmanager
def fake_slave(path: Path) -> Iterator[Path]:
    """Answer the slave's JSON-lines requests at ``path`` from a thread, until the block ends."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(16)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                data = receive_line(conn)
                if data:
                    conn.sendall(json.dumps(_fake_answer(json.loads(data))).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(5)


@contextmanager
def real_slave(work: Path, script: str) -> Iterator[Path]:
    """A ``seatledger slave`` for a freshly enrolled site, cut off (no master runs)."""
    data, state = work / "data", work / "slave"
    for argv in (["init", "--data-dir", str(data)],
                 ["site", "enrol", "north", "--data-dir", str(data), "--master", "127.0.0.1:9"]):
        subprocess.run([script, *argv], check=True, capture_output=True, env=ENV)
    proc = subprocess.Popen(
        [script, "slave", "--bundle", str(data / "bundles" / "north.bundle"),
         "--state-dir", str(state), "--retry", "1h"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        deadline = time.monotonic() + SLAVE_START_TIMEOUT
        while subprocess.run([script, "seat", "list", "--state-dir", str(state)],
                             capture_output=True, env=ENV).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the slave did not start serving its socket")
            time.sleep(0.2)
        yield state
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_command(argv: Sequence[str], runs: int, expect: int) -> dict[str, Any]:
    """Median and min wall time of ``argv`` as a whole process, in milliseconds, and its
    median CPU time (user + system: less disturbed than wall time on a busy machine)."""
    subprocess.run(argv, capture_output=True, env=ENV)  # warm-up: page cache, .pyc files
    times, cpu, codes = [], [], set()
    for _ in range(runs):
        cpu_before, start = _children_cpu(), time.perf_counter()
        done = subprocess.run(argv, capture_output=True, env=ENV)
        times.append((time.perf_counter() - start) * 1000)
        cpu.append((_children_cpu() - cpu_before) * 1000)
        codes.add(done.returncode)
    median = statistics.median(times)
    result: dict[str, Any] = {"median_ms": round(median, 1), "min_ms": round(min(times), 1),
                              "cpu_median_ms": round(statistics.median(cpu), 1),
                              "meets_target": median <= TARGET_MS}
    if codes != {expect}:
        result["error"] = f"exit status {sorted(codes)}, expected {expect}"
    return result


def measure(work: Path, runs: int, with_real_slave: bool) -> dict[str, Any]:
    own_bin = str(Path(sys.executable).parent)
    script = shutil.which("seatledger", path=own_bin) or shutil.which("seatledger")
    if script is None:
        raise SystemExit("no 'seatledger' script installed (pip install -e .)")
    runners: dict[str, list[str]] = {"script": [script],
                                     "module": [sys.executable, "-m", "seatledger.cli"]}
    on_path = shutil.which("seatledger")
    if on_path and os.path.realpath(on_path) != os.path.realpath(script):
        runners["path_script"] = [on_path]

    nowhere = work / "no-slave"
    nowhere.mkdir()
    fake_dir = work / "fake-slave"
    fake_dir.mkdir()
    acquire = ["seat", "acquire", "--user", "u3", "--class", "PRED"]
    commands: dict[str, tuple[list[str], int]] = {
        "help": (["--help"], 0),
        "status_help": (["status", "--help"], 0),
        "seat_list_no_slave": (["seat", "list", "--state-dir", str(nowhere)], 1),
        "seat_acquire_no_slave": ([*acquire, "--state-dir", str(nowhere)], 1),
        "seat_list_fake_slave": (["seat", "list", "--state-dir", str(fake_dir)], 0),
        "seat_acquire_fake_slave": ([*acquire, "--state-dir", str(fake_dir)], 0),
    }
    results: dict[str, dict[str, Any]] = {name: {} for name in runners}
    with fake_slave(fake_dir / "slave.sock"):
        for runner, prefix in runners.items():
            for name, (argv, expect) in commands.items():
                results[runner][name] = time_command([*prefix, *argv], runs, expect)
    real: dict[str, Any] = {"skipped": "--no-real-slave"}
    if with_real_slave:
        try:
            with real_slave(work / "real", script) as state:
                for runner, prefix in runners.items():
                    results[runner]["seat_list_real_slave"] = time_command(
                        [*prefix, "seat", "list", "--state-dir", str(state)], runs, 0)
            real = {"started": True}
        except (RuntimeError, subprocess.CalledProcessError) as e:
            real = {"skipped": f"could not start a slave: {e}"}
    interpreter = time_command([sys.executable, "-c", "pass"], runs, 0)
    # The target: the dialler's seat commands and --help, a command group's too.
    targeted = [r for runner in ("script", "module") for r in results[runner].values()
                if "median_ms" in r]
    return {
        "benchmark": "cli_startup",
        # (the caller's environment turned the bytecode cache off: it is on for these runs)
        "bytecode_cache_off_in_caller": BYTECODE_OFF_BY_CALLER,
        "target_ms": {"wall_median_max": TARGET_MS,
                      "applies_to": ["script", "module"]},
        "all_meet_target": all(r["meets_target"] and "error" not in r for r in targeted),
        "runs": runs,
        "python": platform.python_version(),
        "interpreter": sys.executable,
        "checkout": str(CHECKOUT),
        "script": script,
        "path_script": runners.get("path_script", [None])[0],
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python_c_pass": interpreter,
        "real_slave": real,
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per command")
    parser.add_argument("--no-real-slave", action="store_true",
                        help="do not start a real slave (the fake one is always timed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="seatledger-cli-bench-") as tmp:
        print(json.dumps(measure(Path(tmp), args.runs, not args.no_real_slave)))


if __name__ == "__main__":
    main()
