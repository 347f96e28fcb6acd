"""Chaining with real processes: ``seatledger master --upstream-bundle`` under a running
supermaster, a slave at the chained master, and the dialler's ``seat`` command."""

from __future__ import annotations

import subprocess
from pathlib import Path

import trio

from seatledger.config.settings import load_config
from seatledger.config.store import open_ledger
from seatledger.services.sites import enrol_site
from tests.integration.web_world import (
    CLI,
    deploy,
    killed_at_exit,
    master,
    seat,
    slave,
    wait_for_line,
)


def _top_seats(root: Path) -> set[str]:
    with open_ledger(load_config(root), read_only=True) as app:
        licence = app.replay()
    assert licence is not None
    return set(licence.sites["mid"].seats)


async def test_a_chained_master_process_asks_its_upstream(tmp_path: Path) -> None:
    top = deploy(tmp_path / "top", "")
    top_config = load_config(top.root)
    with open_ledger(top_config) as app:
        up = enrol_site(top_config, app, "mid", local_limits={"PRED": 1},
                        master=f"127.0.0.1:{top.port}", output=tmp_path / "mid-up.bundle")
    mid = deploy(tmp_path / "mid", "")
    state = tmp_path / "north"
    with master(top) as t:
        await wait_for_line(t, b"serving")
        with killed_at_exit("master", "--data-dir", str(mid.root), "--listen",
                            f"127.0.0.1:{mid.port}", "--upstream-bundle", str(up),
                            log=tmp_path / "mid.log") as m:
            await wait_for_line(m, b"serving")
            with slave(mid, state) as s:
                await wait_for_line(s, b"socket")
                with trio.fail_after(60):
                    while "normal" not in (out := _try_acquire(state, "alice")):
                        assert "unreachable" in out or "connecting" in out or out == "", out
                        await trio.sleep(0.3)
                assert _top_seats(top.root) == {"north/alice"}
                refused = _acquire(state, "bob")
                assert refused.returncode == 1
                assert "upstream:site_limit" in refused.stdout + refused.stderr
                seat(state, "release", "--user", "alice")
                with trio.fail_after(30):
                    while _top_seats(top.root):
                        await trio.sleep(0.2)
    with open_ledger(load_config(mid.root), read_only=True) as app:
        linked = [e for _, e in app.events() if type(e).__name__ == "UpstreamLinked"]
    assert [(e.upstream, e.site) for e in linked] == [  # type: ignore[attr-defined]
        (top_config.origin, "mid")]
    shown = subprocess.run([*CLI, "licence", "show", "--data-dir", str(mid.root)],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert f"chained under the upstream master {top_config.origin} as its site mid" in (
        shown.stdout)


def _acquire(state: Path, user: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "seat", "acquire", "--user", user, "--class", "PRED",
                           "--state-dir", str(state)], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def _try_acquire(state: Path, user: str) -> str:
    done = _acquire(state, user)
    return done.stdout if done.returncode == 0 else ""


def test_a_missing_upstream_bundle_is_one_line_and_exit_1(tmp_path: Path) -> None:
    mid = deploy(tmp_path / "mid", "")
    done = subprocess.run([*CLI, "master", "--data-dir", str(mid.root), "--upstream-bundle",
                           str(tmp_path / "nope.bundle")], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "no bundle at" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_upstream_answer_timeout_is_refused(tmp_path: Path) -> None:
    mid = deploy(tmp_path / "mid", "[upstream]\nbundle = \"up.bundle\"\nanswer_timeout = 5\n")
    done = subprocess.run([*CLI, "master", "--data-dir", str(mid.root)], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert "[upstream] answer_timeout" in done.stderr and "Traceback" not in done.stderr
