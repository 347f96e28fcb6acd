"""``seatledger doctor`` on real data directories: healthy, then broken one way at a time;
each problem is one line on stderr and exit 1."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from seatledger.config.settings import load_config
from seatledger.config.store import open_ledger
from seatledger.services.doctor import run_checks
from tests.licensing import Vendor, licensed_data_dir

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ["config", "keys", "modes", "disk", "seal", "export", "licence", "clock"]


def doctor(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "seatledger.cli", "doctor", "--data-dir",
                           str(root), *extra], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def problems(root: Path, **kwargs: object) -> dict[str, str]:
    return {c.name: c.detail for c in run_checks(root, **kwargs) if not c.ok}  # type: ignore[arg-type]


def test_a_healthy_data_directory_passes_every_check(tmp_path: Path) -> None:
    root, _vendor = licensed_data_dir(tmp_path)
    done = doctor(root)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert [line.split(":")[0].split()[1] for line in done.stdout.splitlines()] == CHECKS

    done = doctor(root, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert [c["name"] for c in report["checks"]] == CHECKS


def test_each_problem_is_one_line_and_exit_1(tmp_path: Path) -> None:
    root, _vendor = licensed_data_dir(tmp_path)
    (root / "keys" / "signing.pub").chmod(0o644)
    (root / "ca").chmod(0o755)
    (root / "seal" / "latest.checkpoint").write_text("garbage\n")
    done = doctor(root)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert [line.split(": ")[2] for line in lines] == ["modes", "seal"], done.stderr
    assert "signing.pub is 644" in lines[0] and "ca is 755" in lines[0]
    assert "audit verify failed" in lines[1]

    done = doctor(root, "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["ok"] is False
    assert {c["name"] for c in report["checks"] if not c["ok"]} == {"modes", "seal"}


def test_a_missing_data_directory_is_one_line(tmp_path: Path) -> None:
    done = doctor(tmp_path / "nowhere")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "config: no seatledger data directory" in done.stderr


def test_a_bad_alerts_table_fails_the_config_check(tmp_path: Path) -> None:
    root, _vendor = licensed_data_dir(tmp_path)
    with (root / "seatledger.toml").open("a") as f:
        f.write('\n[alerts.webhook]\nurl = "ftp://nowhere/"\nsecret_file = "x"\n')
    assert list(problems(root)) == ["config"]
    assert "url must be http" in problems(root)["config"]


def test_trial_mode_is_a_problem(tmp_path: Path) -> None:
    vendor = Vendor(tmp_path / "vendor")
    root = tmp_path / "data"
    vendor.init_master(root)
    found = problems(root)
    assert list(found) in (["licence"], ["licence", "export"])
    assert "trial" in found["licence"] or "no licence" in found["licence"]


def test_a_licence_near_expiry_and_an_old_export_are_problems(tmp_path: Path) -> None:
    vendor = Vendor(tmp_path / "vendor")
    root = tmp_path / "data"
    vendor.init_master(root)
    vendor.install(root, expires_at=datetime.now(UTC) + timedelta(days=20))
    found = problems(root)
    assert list(found) == ["licence"] and "days left" in found["licence"]
    # Five days on, without an export delivered since the licence was installed.
    later = datetime.now(UTC) + timedelta(days=5)
    found = problems(root, now=lambda: later)
    assert list(found) == ["export", "licence"]
    assert "no export delivered yet; licence installed 5 days ago" in found["export"]


def test_a_wall_clock_behind_the_ledger_is_a_problem(tmp_path: Path) -> None:
    root, _vendor = licensed_data_dir(tmp_path)
    with open_ledger(load_config(root), read_only=True) as app:
        licence = app.replay()
    assert licence is not None and licence.modified_on is not None
    last = licence.modified_on
    found = problems(root, now=lambda: last - timedelta(hours=2))
    assert list(found) == ["clock"]
    assert "behind the ledger's last recorded time" in found["clock"]


def test_too_little_disk_for_six_months_is_a_problem(tmp_path: Path) -> None:
    root, _vendor = licensed_data_dir(tmp_path)
    config = root / "seatledger.toml"
    config.write_text(config.read_text().replace("events_per_agent_per_day = 10",
                                                 "events_per_agent_per_day = 100000000000"))
    found = problems(root)
    assert list(found) == ["disk"] and "six months at 120 agents need" in found["disk"]
