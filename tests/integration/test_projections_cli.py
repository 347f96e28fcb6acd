"""``seatledger status``, ``report usage``, ``projections rebuild`` and ``audit replay |
history | why-refused`` on a data directory holding the scripted day."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from ledger import ManualClock
from seatledger.cli.main import main
from seatledger.config.settings import load_config
from seatledger.config.store import open_ledger
from seatledger.services.datadir import init_data_dir
from tests.integration.test_projections_contract import at, scripted_day


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    init_data_dir(root, history=False)
    clock = ManualClock(at("06:00"))
    with open_ledger(load_config(root), clock=clock) as app:
        scripted_day(app, clock)
    return root


def run(capsys: pytest.CaptureFixture[str], root: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["--data-dir", str(root), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_status_shows_pools_and_sites(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, data_dir, "status")
    assert code == 0 and err == ""
    assert "licence LIC-" in out and "customer Northwind" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert lines["PRED"][:4] == ["PRED", "0", "100", "open"]
    assert lines["north"][:3] == ["north", "new", "0"]


def test_status_json(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, data_dir, "status", "--json")
    assert code == 0
    data = json.loads(out)
    pools = {p["pool"]: p for p in data["status"]["pools"]}
    assert pools["PRED+ACD"]["limit"] == 115
    assert pools["ACD"]["deadline"] == "2026-03-04T14:00:00+00:00"
    assert {s["site"] for s in data["status"]["sites"]} == {"north", "south"}


def test_status_watch_refreshes_until_interrupted(data_dir: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    naps = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr("seatledger.cli.reports.time.sleep", sleep)
    code, out, _ = run(capsys, data_dir, "status", "--watch", "--json")
    assert code == 0 and naps == [1.0, 1.0]
    assert len(out.splitlines()) == 2 and all(json.loads(line) for line in out.splitlines())


def test_report_usage_json_by_class(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, data_dir, "report", "usage", "--from", "2026-03-02",
                       "--to", "2026-03-02", "--by", "class", "--format", "json")
    assert code == 0
    data = json.loads(out)
    rows = {r["key"]: r for r in data["rows"]}
    assert rows["PRED"]["agent_hours"] == pytest.approx(645.0)
    assert (rows["PRED"]["peak"], rows["PRED"]["peak_at"]) == (110, "2026-03-02T09:15:00+00:00")
    assert rows["PRED+ACD"]["peak"] == 120
    assert data["end"] == "2026-03-03T00:00:00+00:00"  # --to names a day, which is included


def test_report_usage_table_csv_and_html(data_dir: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, data_dir, "report", "usage", "--from", "2026-03-02",
                       "--to", "2026-03-03", "--by", "site")
    assert code == 0
    assert "north" in out and "495.00" in out and "site_limit 5" in out
    code, out, _ = run(capsys, data_dir, "report", "usage", "--from", "2026-03-02",
                       "--to", "2026-03-03", "--by", "tenant", "--per", "hour", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    acme = [r for r in rows if r["tenant"] == "acme"]
    assert sum(float(r["agent_hours"]) for r in acme) == pytest.approx(495.0)
    assert {r["period_start"][11:13] for r in acme} == {f"{h:02d}" for h in range(8, 17)}
    target = tmp_path / "usage.html"
    code, out, _ = run(capsys, data_dir, "report", "usage", "--from", "2026-03-02",
                       "--to", "2026-03-02", "--format", "html", "--output", str(target))
    assert code == 0 and out == ""
    assert "<svg" in target.read_text()


def test_report_usage_html_over_a_century_as_the_csv_does(
        data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    century = ("--from", "2000-01-01", "--to", "2100-01-01")
    code, out, err = run(capsys, data_dir, "report", "usage", *century, "--format", "csv")
    assert code == 0 and err == "" and "north" in out
    target = tmp_path / "century.html"
    code, out, err = run(capsys, data_dir, "report", "usage", *century, "--format", "html",
                         "--output", str(target))
    assert (code, out, err) == (0, "", "")
    page = target.read_text()
    assert page.startswith("<!DOCTYPE html>") and "2000-01-01 00:00 to 2100-01-02 00:00" in page
    assert ">Jan 2000</text>" in page and "peak 110 at 2026-03-02 09:15" in page
    # A century of hours is drawn in columns, not as 876,000 path segments.
    assert len(page) < 1_000_000


def test_report_usage_rejects_a_period_ending_before_it_starts(
        data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, data_dir, "report", "usage", "--from", "2026-03-05",
                         "--to", "2026-03-02")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "--to" in err
    with pytest.raises(SystemExit) as bad:
        main(["--data-dir", str(data_dir), "report", "usage", "--from", "yesterday",
              "--to", "2026-03-02"])
    assert bad.value.code == 2


def test_projections_rebuild(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, data_dir, "projections", "rebuild")
    assert code == 0 and err == ""  # no progress bar when stderr is not a terminal
    assert out.startswith("rebuilt status, usage, point_in_time from ")
    code, out, _ = run(capsys, data_dir, "projections", "rebuild", "usage", "--json")
    assert code == 0 and json.loads(out)["rebuilt"] == ["usage"]
    with pytest.raises(SystemExit) as bad:
        main(["--data-dir", str(data_dir), "projections", "rebuild", "billing"])
    assert bad.value.code == 2


def test_audit_replay_as_of(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, data_dir, "audit", "replay", "--as-of", "2026-03-02T09:30",
                       "--site", "south", "--json")
    assert code == 0
    data = json.loads(out)
    assert len(data["seats"]) == 40 and {s["site"] for s in data["seats"]} == {"south"}
    pools = {p["pool"]: p for p in data["pools"]}
    assert (pools["PRED"]["in_use"], pools["PRED"]["grace"]) == (110, "open")
    code, out, _ = run(capsys, data_dir, "audit", "replay", "--as-of", "2026-03-02T09:30")
    assert code == 0 and "120 seat(s) held" in out


def test_audit_history_and_why_refused(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, data_dir, "audit", "history", "--user", "s00")
    assert code == 0 and "granted" in out and "logoff" in out
    code, out, _ = run(capsys, data_dir, "audit", "history", "--user", "n80", "--json")
    assert code == 0
    (entry,) = json.loads(out)["history"]
    assert (entry["kind"], entry["reason"]) == ("refused", "site_limit")
    code, out, _ = run(capsys, data_dir, "audit", "why-refused", "--user", "n80")
    assert code == 0 and "site_limit" in out and "local limit" in out


def test_an_unknown_site_is_one_clear_line(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, data_dir, "audit", "replay", "--as-of", "2026-03-02",
                         "--site", "nowhere")
    assert code == 1 and out == ""
    assert err == "seatledger: site 'nowhere' was never enrolled here\n"


def test_no_data_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, tmp_path / "missing", "status")
    assert code == 1 and err.startswith("seatledger: ") and err.count("\n") == 1
