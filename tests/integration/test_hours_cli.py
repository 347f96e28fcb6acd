"""An hours licence through the command line: the vendor issues it with ``--hours``, the
master installs it, and ``licence show`` and ``status`` give the hours licensed, used and
left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.domain.terms import parse_terms
from seatledger.cli.main import main
from seatledger.config.licence_file import split_licence


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_an_hours_licence_is_issued_installed_and_shown(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vdir, root = tmp_path / "v", tmp_path / "m"
    v = ("--vendor-dir", str(vdir))
    assert run(capsys, "vendor", "init", *v, "--name", "Reseller")[0] == 0
    assert run(capsys, "vendor", "key", *v, "--output", str(tmp_path / "vendor.pub"))[0] == 0
    assert run(capsys, "init", "--data-dir", str(root), "--vendor-key",
               str(tmp_path / "vendor.pub"))[0] == 0
    assert run(capsys, "licence", "request", "--data-dir", str(root), "--output",
               str(tmp_path / "req.json"))[0] == 0
    assert run(capsys, "vendor", "customer", "add", *v, "Hours Co")[0] == 0
    licence = tmp_path / "hours.licence"
    code, _, err = run(capsys, "vendor", "licence", "issue", *v, "--customer", "Hours Co",
                       "--request", str(tmp_path / "req.json"), "--seats", "PRED=120",
                       "--hours", "PRED=5000,VIR=300", "--output", str(licence))
    assert code == 0, err
    text = split_licence(licence.read_text())[0]
    assert "\n[hours]\nPRED = 5000\nVIR = 300\n" in text
    assert parse_terms(text).hours == {"PRED": 5000, "VIR": 300}

    code, out, err = run(capsys, "licence", "install", "--data-dir", str(root), str(licence))
    assert code == 0, err
    code, out, _ = run(capsys, "licence", "show", "--data-dir", str(root), "--json")
    hours = json.loads(out)["hours"]
    assert hours["PRED"]["licensed_hours"] == 5000 and hours["PRED"]["left_hours"] == 5000
    assert hours["VIR"] == {"licensed_hours": 300, "used_hours": 0, "left_hours": 300,
                            "seats_held": 0, "exhausted": False}
    assert "VIR" not in json.loads(out)["pools"]  # hours alone: no concurrent limit

    code, out, err = run(capsys, "status", "--data-dir", str(root))
    assert code == 0, err
    assert "PRED   0.00  5000.00      5000              0" in out, out
    assert "VIR    0.00   300.00       300              0" in out, out


def test_hours_must_be_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vdir = tmp_path / "v"
    v = ("--vendor-dir", str(vdir))
    code, _, err = run(capsys, "vendor", "licence", "issue", *v, "--customer", "A",
                       "--request", "r", "--seats", "PRED=200", "--hours", "PRED=x")
    assert code == 2 and "bad seat count" in err
