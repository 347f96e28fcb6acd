"""``seatledger site seats`` and ``site release`` against a REAL running master daemon, with
a real slave daemon connected over mutual TLS: the operator sees who holds which seat,
releases one user's seat and then every seat left, each recorded (``SeatReleased`` reason
``operator``); the slave is told, drops the seat and raises an alert, so ``seat list`` no
longer shows it. Bad input is one line and exit 1 (2 for bad usage). With the master
stopped the same commands write the store directly."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

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


def site(world: Deployment, *argv: str) -> subprocess.CompletedProcess[str]:
    """``seatledger site ...`` on the master's data directory."""
    return subprocess.run([*CLI, "site", *argv, "--data-dir", str(world.root)],
                          capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def site_json(world: Deployment, *argv: str) -> Any:
    done = site(world, *argv, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def held_at_slave(state: Path) -> set[str]:
    return {s["user"] for s in json.loads(seat(state, "list", "--json"))["seats"]}


async def wait_held_at_slave(state: Path, users: set[str]) -> None:
    with trio.fail_after(30):
        while held_at_slave(state) != users:
            await trio.sleep(0.1)


def refused(done: subprocess.CompletedProcess[str], status: int, text: str) -> None:
    """The command failed with ``status`` and one line on stderr that says ``text``."""
    assert done.returncode == status, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert text in lines[-1], done.stderr
    if status == 1:
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr


def operator_releases(world: Deployment) -> list[tuple[str, str, str]]:
    with open_ledger(load_config(world.root), read_only=True) as app:
        return [(e.site, e.user, e.reason) for _, e in app.events()
                if type(e).__name__ == "SeatReleased"]


async def test_an_operator_releases_seats_while_the_master_runs(tmp_path: Path) -> None:
    world = deploy(tmp_path, "")
    state = tmp_path / "north"
    with master(world) as m:
        await wait_for_line(m, b"serving")
        with slave(world, state) as s:
            await wait_for_line(s, b"socket")
            with trio.fail_after(30):  # the session is up: seats are the master's
                while json.loads(seat(state, "list", "--json"))["state"] != "online":
                    await trio.sleep(0.1)
            seat(state, "acquire", "--user", "p1", "--class", "PRED", "--tenant", "acme",
                 "--campaign", "spring")
            seat(state, "acquire", "--user", "p2", "--class", "PRED")
            seat(state, "acquire", "--user", "a1", "--class", "ACD")

            shown = site_json(world, "seats", "north")
            assert shown["site"] == "north" and shown["state"] == "connected"
            assert [(x["user"], x["agent_class"]) for x in shown["seats"]] == [
                ("p1", "PRED"), ("p2", "PRED"), ("a1", "ACD")]
            assert shown["seats"][0]["tenant"] == "acme"
            assert shown["seats"][0]["campaign"] == "spring"
            table = site(world, "seats", "north")
            assert table.returncode == 0, table.stderr
            assert "north: connected" in table.stdout and "spring" in table.stdout
            assert [line.split()[0] for line in table.stdout.splitlines()[3:]] == [
                "p1", "p2", "a1"]

            done = site(world, "release", "north", "--user", "p1")
            assert done.returncode == 0, done.stderr
            assert "released 1 seat(s) at site north: p1" in done.stdout
            await wait_held_at_slave(state, {"p2", "a1"})
            assert [x["user"] for x in site_json(world, "seats", "north")["seats"]] == [
                "p2", "a1"]

            refused(site(world, "release", "north", "--user", "nobody"), 1,
                    "user 'nobody' holds no seat at site 'north'")
            refused(site(world, "release", "atlantis", "--all"), 1,
                    "site 'atlantis' is not enrolled")
            refused(site(world, "seats", "atlantis"), 1, "site 'atlantis' is not enrolled")
            refused(site(world, "release", "north"), 2, "one of the arguments --user --all")
            refused(site(world, "release", "north", "--user", "p2", "--all"), 2,
                    "not allowed with argument")

            released = site_json(world, "release", "north", "--all")
            assert sorted(x["user"] for x in released["released"]) == ["a1", "p2"]
            await wait_held_at_slave(state, set())
            # Both sides agree: the user may log on again, and holds a new seat.
            seat(state, "acquire", "--user", "p1", "--class", "PRED")
            assert [x["user"] for x in site_json(world, "seats", "north")["seats"]] == ["p1"]
            slave_log = (tmp_path / "slave.log").read_text()
            assert ("warning: an operator at the master released the seat of user 'p1'"
                    in slave_log), slave_log
        m.send_signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(lambda: m.wait(timeout=30)) == 0
    assert [r for r in operator_releases(world) if r[2] == "operator"] == [
        ("north", "p1", "operator"), ("north", "p2", "operator"), ("north", "a1", "operator")]

    # The master stopped: the commands take the data directory's lock and write the store.
    assert [x["user"] for x in site_json(world, "seats", "north")["seats"]] == ["p1"]
    done = site(world, "release", "north", "--user", "p1")
    assert done.returncode == 0, done.stderr
    assert operator_releases(world)[-1] == ("north", "p1", "operator")
    refused(site(world, "release", "north", "--user", "p1"), 1,
            "user 'p1' holds no seat at site 'north'")
