"""The ledger writer in a process of its own (``[master] writer = "process"``): real master,
slave and ``seat`` processes. Acknowledgements only after the batch is durable; a killed
writer process loses and doubles no acknowledged grant and is replaced; it dies with its
master."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import time
from pathlib import Path

import trio

from seatledger.config.settings import load_config
from seatledger.config.store import open_ledger
from tests.integration.web_world import (
    CLI,
    Deployment,
    deploy,
    master,
    seat,
    slave,
    wait_for_line,
)


def _deploy(tmp_path: Path, **licence: int) -> Deployment:
    """A deployment whose master commits in a writer process of its own."""
    world = deploy(tmp_path, "", **licence)
    config = world.root / "seatledger.toml"
    text = config.read_text()
    assert text.count("[master]\n") == 1
    config.write_text(text.replace("[master]\n", '[master]\nwriter = "process"\n'))
    return world


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"seatledger.daemons.ledger_writer" in cmdline:
            found.append(int(entry.name))
    return found


async def _writer_of(pid: int) -> int:
    with trio.fail_after(30):
        while not (children := _children(pid)):
            await trio.sleep(0.1)
    return children[0]


def _acquire(state: Path, user: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "seat", "acquire", "--user", user, "--class", "PRED",
                           "--state-dir", str(state)], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def _granted(root: Path) -> collections.Counter[str]:
    with open_ledger(load_config(root), read_only=True) as app:
        return collections.Counter(e.user for _, e in app.events()  # type: ignore[attr-defined]
                                   if type(e).__name__ == "SeatGranted")


async def test_seats_go_through_the_writer_process(tmp_path: Path) -> None:
    world = _deploy(tmp_path)
    state = tmp_path / "north"
    with master(world) as m:
        await wait_for_line(m, b"serving")
        writer = await _writer_of(m.pid)
        with slave(world, state) as s:
            await wait_for_line(s, b"socket")
            with trio.fail_after(60):
                while _acquire(state, "p0").returncode != 0:
                    await trio.sleep(0.3)
            for user in ("p1", "p2"):
                assert "normal" in seat(state, "acquire", "--user", user, "--class", "PRED")
            seat(state, "release", "--user", "p2")
            listed = subprocess.run([*CLI, "site", "list", "--data-dir", str(world.root)],
                                    capture_output=True, text=True, timeout=60)
            assert listed.returncode == 0 and "north" in listed.stdout, listed.stderr
        assert _children(m.pid) == [writer]  # one writer process served all of it
        m.send_signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(lambda: m.wait(timeout=60)) == 0
    assert not Path(f"/proc/{writer}").exists()
    assert _granted(world.root) == {"p0": 1, "p1": 1, "p2": 1}
    verify = subprocess.run([*CLI, "audit", "verify", "--data-dir", str(world.root)],
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr


async def test_a_killed_writer_process_loses_no_acknowledged_grant(tmp_path: Path) -> None:
    world = _deploy(tmp_path, pred=1000)
    state = tmp_path / "north"
    acknowledged: list[str] = []
    with master(world) as m:
        await wait_for_line(m, b"serving")
        first = await _writer_of(m.pid)
        with slave(world, state) as s:
            await wait_for_line(s, b"socket")
            with trio.fail_after(60):
                while _acquire(state, "warm").returncode != 0:
                    await trio.sleep(0.3)
            acknowledged.append("warm")

            async def log_ons() -> None:
                for n in range(40):
                    done = await trio.to_thread.run_sync(_acquire, state, f"u{n}")
                    if done.returncode == 0 and "normal" in done.stdout:
                        acknowledged.append(f"u{n}")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(log_ons)
                while len(acknowledged) < 10:
                    await trio.sleep(0.05)
                os.kill(first, signal.SIGKILL)
            second = await _writer_of(m.pid)
            assert second != first
            assert "normal" in seat(state, "acquire", "--user", "after", "--class", "PRED")
            acknowledged.append("after")
        m.send_signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(lambda: m.wait(timeout=60)) == 0
    granted = _granted(world.root)
    assert set(acknowledged) <= set(granted)  # every acknowledged grant is recorded...
    assert max(granted.values()) == 1  # ...once
    assert len(acknowledged) >= 30


async def test_the_writer_process_dies_with_its_master(tmp_path: Path) -> None:
    world = _deploy(tmp_path)
    with master(world) as m:
        await wait_for_line(m, b"serving")
        writer = await _writer_of(m.pid)
        m.kill()
        m.wait()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{writer}").exists() and time.monotonic() < deadline:
            await trio.sleep(0.1)
        gone = not Path(f"/proc/{writer}").exists() or "Z" in (
            Path(f"/proc/{writer}/stat").read_text().rsplit(")", 1)[1].split()[0])
        assert gone


def test_a_bad_writer_setting_is_one_line_and_exit_1(tmp_path: Path) -> None:
    world = deploy(tmp_path, "")
    config = world.root / "seatledger.toml"
    config.write_text(config.read_text().replace("[master]\n", '[master]\nwriter = "fork"\n'))
    done = subprocess.run([*CLI, "master", "--data-dir", str(world.root)], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert "[master] writer must be" in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0
