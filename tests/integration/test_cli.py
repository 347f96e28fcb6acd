"""The command-line contract: exit statuses, one-line errors, files and their permissions."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from seatledger.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's usage errors
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    root = tmp_path / "data"
    code, _, err = run(capsys, "init", "--data-dir", str(root))
    assert code == 0, err
    return root


def test_init_creates_config_keys_ca_and_store_with_private_keys(data: Path) -> None:
    for name in ("seatledger.toml", "keys/at-rest.key", "keys/signing.key", "ca/ca.crt",
                 "ca/master.crt", "ledger.db"):
        assert (data / name).exists(), name
    for secret in ("keys/at-rest.key", "keys/signing.key", "ca/ca.key", "ca/master.key"):
        assert stat.S_IMODE((data / secret).stat().st_mode) == 0o600, secret
    assert "at-rest" not in (data / "seatledger.toml").read_text().split("keys live")[0]


def test_init_refuses_to_overwrite(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = (data / "keys/at-rest.key").read_bytes()
    code, _, err = run(capsys, "init", "--data-dir", str(data))
    assert code == 1 and "not overwriting" in err and err.count("\n") == 1
    assert (data / "keys/at-rest.key").read_bytes() == key


def test_data_dir_comes_from_the_environment(data: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEATLEDGER_DATA_DIR", str(data))
    code, out, _ = run(capsys, "licence", "show")
    assert code == 0 and "TRIAL MODE: no licence installed yet" in out


@pytest.mark.parametrize("argv", [
    # The operator can no longer set terms: the vendor's licence file does.
    ("licence", "issue", "--customer", "A", "--seats", "PRED=200"),
    ("licence", "amend", "--seats", "PRED=200"),
    ("licence", "install"),
    ("vendor", "licence", "issue", "--customer", "A", "--request", "r", "--seats", "FOO=1"),
    ("vendor", "licence", "issue", "--customer", "A", "--request", "r", "--seats", "PRED=x"),
    ("vendor", "licence", "issue", "--customer", "A", "--request", "r", "--seats", "PRED=200",
     "--grace", "two days"),
    ("vendor", "licence", "issue", "--customer", "A", "--request", "r", "--seats", "PRED=200",
     "--expires", "tomorrow"),
    ("nonsense",),
    ("licence",),
])
def test_bad_usage_exits_2(data: Path, capsys: pytest.CaptureFixture[str],
                           argv: tuple[str, ...]) -> None:
    code, _, err = run(capsys, *argv, "--data-dir", str(data))
    assert code == 2 and "Traceback" not in err and "error" in err


def test_a_missing_data_dir_is_a_one_line_error(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "licence", "show", "--data-dir", str(tmp_path / "none"))
    assert code == 1 and err.count("\n") == 1 and "seatledger init" in err


def test_a_wrong_key_is_a_one_line_error_and_loses_nothing(
        data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = ("--data-dir", str(data))
    assert run(capsys, "site", "enrol", "south", *d)[0] == 0
    before = (data / "ledger.db").read_bytes()
    key = data / "keys/at-rest.key"
    original = key.read_bytes()
    key.write_text(os.urandom(32).hex())
    code, _, err = run(capsys, "site", "enrol", "north", *d)
    assert code == 1 and "at-rest key does not open this store" in err and err.count("\n") == 1
    key.write_bytes(original)
    assert (data / "ledger.db").read_bytes() == before
    assert run(capsys, "site", "enrol", "north", *d)[0] == 0


def test_a_key_readable_by_others_is_refused(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (data / "keys/at-rest.key").chmod(0o644)
    code, _, err = run(capsys, "licence", "show", "--data-dir", str(data))
    assert code == 1 and "chmod 600" in err


def test_a_damaged_config_is_a_one_line_error(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (data / "seatledger.toml").write_text("[store\nurl = 3")
    code, _, err = run(capsys, "licence", "show", "--data-dir", str(data))
    assert code == 1 and err.count("\n") == 1 and "seatledger.toml" in err


def test_storage_reports_bytes_per_event_and_projection(
        data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = ("--data-dir", str(data))
    code, out, _ = run(capsys, "storage", *d, "--json")
    report = json.loads(out)
    assert code == 0 and report["events"] >= 1 and report["bytes"] > 0
    assert report["mb_per_agent_6_months"] == pytest.approx(
        report["bytes_per_event"] * 10 * 182 / 1e6, rel=0.01)
    # storage is read-only: asking twice records nothing
    assert json.loads(run(capsys, "storage", *d, "--json")[1])["events"] == report["events"]


def test_demo_runs_end_to_end_and_verifies(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "seatledger.cli", "demo", "--data-dir",
                           str(tmp_path / "demo")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "grace until" in out and "(24h left)" in out and "(4h left)" in out
    assert "refused (limit_enforced)" in out
    assert "east: cut_off after 3 failed rounds; master sees east cut_off" in out
    assert "journal synced" in out
    assert "audit verify: intact" in out
    assert "vendor usage statement matches the master's" in out
    # The vendor sets the terms: a signed licence installed, forgeries refused, more seats
    # as a new licence, the export to where the licence directs, and where to look after.
    assert "vendor signed licence NORTHWIND-CONTACT-CENTRE-0001 (serial 1)" in out
    assert "install of an edited copy (PRED = 900) refused: bad signature" in out
    assert "install of a self-made licence refused: bad signature" in out
    assert "the vendor signed serial 2 (PRED=150)" in out
    assert "(the destination the licence names)" in out
    demo = tmp_path / "demo"
    assert f"try: seatledger status --data-dir {demo / 'master'}" in out
    assert f"try: seatledger vendor report watchlist --vendor-dir {demo / 'vendor'}" in out
    # The vendor's store: imported through the vendor's import, billed, watched.
    assert "vendor import: 3 day(s) of Northwind Contact Centres verified and imported" in out
    assert "vendor billing 2026-03: Northwind Contact Centres:" in out
    watchlist = out.split("vendor watchlist:")[1]
    for kind in ("refused_licence", "enforcement", "grace_opened"):
        assert f" {kind} " in watchlist, kind
    assert (demo / "vendor" / "keys" / "age-identity.txt").exists()


def test_a_bad_bundle_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "bad.bundle"
    bundle.write_text(json.dumps({"site": "x", "ca_pem": "junk", "cert_pem": "junk",
                                  "key_pem": "junk", "primary": "127.0.0.1:1"}))
    code, _, err = run(capsys, "slave", "--bundle", str(bundle), "--state-dir",
                       str(tmp_path / "s"))
    assert code == 1 and err.count("\n") == 1 and "TLS credentials" in err
    code, _, err = run(capsys, "slave", "--bundle", str(tmp_path / "none.bundle"))
    assert code == 1 and "no bundle" in err


def test_seat_commands_without_a_running_slave_fail_clearly(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "seat", "acquire", "--user", "u", "--class", "PRED",
                       "--state-dir", str(tmp_path))
    assert code == 1 and "no slave is running" in err


def test_a_master_on_a_busy_port_fails_with_one_line(
        data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = run(capsys, "master", "--data-dir", str(data), "--listen",
                           f"127.0.0.1:{port}")
    assert code == 1 and err.count("\n") == 1 and "in use" in err
