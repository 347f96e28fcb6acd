"""The supervisor restarts a dying child with doubling delays, gives up after its limit,
and ``seatledger status`` shows what it did."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
import trio

from seatledger.cli.main import main
from seatledger.config.store import open_ledger
from seatledger.daemons.master import write_children
from seatledger.daemons.supervisor import ChildState, RestartPolicy, Supervisor
from seatledger.services.datadir import init_data_dir

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


async def test_the_follower_is_restarted_with_backoff_then_given_up(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = init_data_dir(tmp_path / "data", history=False)  # the licence begins it
    with open_ledger(config) as app:
        app.issue_licence(customer="Acme", limits={"PRED": 100})
    policy = RestartPolicy(first_delay=0.2, max_delay=10, max_restarts=3, window=600)
    supervisor = Supervisor("read-model follower", SLEEPER, policy=policy,
                            on_change=lambda s: write_children(config, s))
    started: list[float] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(supervisor.run)
        for _ in range(4):  # kill it four times: three restarts, then it gives up
            with trio.fail_after(10):
                while supervisor.status.state is not ChildState.RUNNING:
                    await trio.sleep(0.01)
            started.append(trio.current_time())
            pid = supervisor.status.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            with trio.fail_after(10):
                while supervisor.status.state is ChildState.RUNNING:
                    await trio.sleep(0.01)
        with trio.fail_after(10):
            while supervisor.status.state is not ChildState.GAVE_UP:
                await trio.sleep(0.01)
    gaps = [b - a for a, b in zip(started, started[1:], strict=False)]
    # Backoff doubles: 0.2 s, 0.4 s, 0.8 s before each restart (plus the kill's own time).
    assert [round(g, 1) >= d for g, d in zip(gaps, (0.2, 0.4, 0.8), strict=True)] == [True] * 3
    assert gaps[2] > gaps[0] * 2
    assert supervisor.status.restarts == 3
    assert supervisor.status.last_exit == -signal.SIGKILL
    capsys.readouterr()
    assert main(["status", "--json", "--data-dir", str(config.root)]) == 0
    daemons = json.loads(capsys.readouterr().out)["daemons"]
    assert daemons["read-model follower"]["state"] == "gave_up"
    assert daemons["read-model follower"]["restarts"] == 3
