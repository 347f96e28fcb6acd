"""While a master runs it is its store's only writer: operator commands go to it over the admin
socket and are committed in its batches, under full seat load, without a crash, a lost
command or a false tamper report; a second master on the same data directory refuses."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from seatledger.cli.main import main
from seatledger.config.bundle import Bundle
from seatledger.config.settings import load_config
from seatledger.config.store import open_ledger
from seatledger.services.datadir import init_data_dir
from seatledger.services.sites import enrol_site
from tests.integration.test_crash import free_port, load, start_master
from tests.licensing import Vendor

OPERATOR_COMMANDS = 100


def _prepare(tmp_path: Path) -> tuple[Path, int, dict[str, Bundle]]:
    root = tmp_path / "data"
    init_data_dir(root, history=False, vendor_key=Vendor(tmp_path / "vendor").key_file)
    config = load_config(root)
    port = free_port()
    bundles = {}
    with open_ledger(config) as app:
        app.issue_licence(customer="Acme", limits={"PRED": 100_000, "ACD": 100})
        for site in ("north", "south"):
            path = enrol_site(config, app, site, master=f"127.0.0.1:{port}",
                              output=tmp_path / f"{site}.bundle")
            bundles[site] = Bundle.read(path)
    return root, port, bundles


def _operator_commands(root: Path, tmp_path: Path) -> list[list[str]]:
    """Enrol, revoke and install a new vendor-signed licence (one more ACD seat each time),
    interleaved: 100 commands that each write the store. Without a vendor key pinned in
    ``root``, the third command shows the licence instead (a read through the writer)."""
    commands: list[list[str]] = []
    data = ["--data-dir", str(root)]
    vendor = (Vendor(tmp_path / "vendor") if (root / "keys" / "vendor.pub").exists()
              else None)
    i = 0
    while len(commands) < OPERATOR_COMMANDS:
        i += 1
        commands.append(["site", "enrol", f"op{i}", "--output", str(tmp_path / f"op{i}.b"), *data])
        commands.append(["site", "revoke", f"op{i}", *data])
        if vendor is None:
            commands.append(["licence", "show", *data])
        else:
            licence = vendor.licence_for(root, f"PRED=100000,ACD={100 + i}",
                                         out=tmp_path / f"licence-{i}.txt")
            commands.append(["licence", "install", str(licence), *data])
    return commands[:OPERATOR_COMMANDS]


async def test_operator_commands_under_full_load_all_succeed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, port, bundles = _prepare(tmp_path)
    master = await start_master(root, port)
    acknowledged: set[tuple[str, str]] = set()
    try:
        sock = root / "run" / "admin.sock"
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        codes: list[int] = []
        progress: list[int] = []
        async with trio.open_nursery() as nursery:
            for name, bundle in bundles.items():
                nursery.start_soon(load, bundle, port, name, acknowledged)
            with trio.fail_after(30):
                while len(acknowledged) < 2000:  # the load is on
                    await trio.sleep(0.05)
            for argv in _operator_commands(root, tmp_path):
                codes.append(await trio.to_thread.run_sync(main, argv))
                progress.append(len(acknowledged))
            nursery.cancel_scope.cancel()
        err = capsys.readouterr().err
        assert codes == [0] * OPERATOR_COMMANDS, err
        assert master.poll() is None, "the master died"
        # Seat traffic was served while the operator worked: it kept growing throughout.
        quarter = OPERATOR_COMMANDS // 4
        assert all(progress[i + quarter] > progress[i] for i in range(0, 3 * quarter, quarter))
    finally:
        master.send_signal(signal.SIGTERM)
        assert master.wait(timeout=30) == 0
    assert main(["audit", "verify", "--data-dir", str(root)]) == 0
    with open_ledger(load_config(root), read_only=True) as app:
        licence = app.replay()
    assert licence is not None
    expected_enrolled = {f"op{i}" for i in range(1, OPERATOR_COMMANDS // 3 + 2)}
    assert expected_enrolled <= set(licence.sites)
    assert all(licence.sites[name].status == "revoked"
               for name in expected_enrolled if name != f"op{OPERATOR_COMMANDS // 3 + 1}")
    # Every licence installed while the sites were busy is in force, the last one last.
    assert licence.limits["ACD"] == 100 + OPERATOR_COMMANDS // 3
    assert licence.serial == OPERATOR_COMMANDS // 3 and licence.licensed


async def test_a_second_master_on_the_same_data_directory_refuses(tmp_path: Path) -> None:
    root, port, _ = _prepare(tmp_path)
    first = await start_master(root, port)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "seatledger.cli", "master", "--data-dir", str(root),
             "--listen", f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"master (pid {first.pid})" in lines[0], second.stderr
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0


def test_a_command_with_no_master_running_takes_the_lock_and_writes(tmp_path: Path) -> None:
    root, _, _ = _prepare(tmp_path)
    assert main(["site", "enrol", "west", "--output", str(tmp_path / "w.b"),
                 "--data-dir", str(root)]) == 0
    with open_ledger(load_config(root)) as app:
        assert "west" in app.licence.sites
    assert not (root / "run" / "admin.sock").exists()
    assert oct(os.stat(root).st_mode & 0o777) == "0o700"
