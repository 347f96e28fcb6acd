"""The vendor's signed licence through the command line: issue, request, install, show, and
every refusal as one line that records nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import pytest

from exporters.envelope import load_signing_key
from ledger.domain.terms import parse_terms
from seatledger.cli.main import main
from seatledger.config.licence_file import (
    BEGIN,
    END,
    minisign_key_fingerprint,
    sign_licence,
    split_licence,
)
from seatledger.config.settings import load_config
from seatledger.config.store import open_ledger
from tests.licensing import Vendor


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def events(root: Path) -> list[str]:
    with open_ledger(load_config(root), read_only=True) as app:
        return [type(e).__name__ for _, e in app.events()
                if type(e).__name__ != "AuditCheckpointSigned"]  # one at every close


@pytest.fixture
def vendor(tmp_path: Path) -> Vendor:
    return Vendor(tmp_path / "vendor")


@pytest.fixture
def master(tmp_path: Path, vendor: Vendor) -> Path:
    root = tmp_path / "master"
    vendor.init_master(root)
    return root


def refused(capsys: pytest.CaptureFixture[str], root: Path, licence: Path, needle: str,
            recorded: bool = True) -> None:
    before = events(root)
    code, _, err = run(capsys, "licence", "install", "--data-dir", str(root), str(licence))
    assert code == 1, err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err, err
    # Nothing installed; the attempt is on record, for the vendor to see.
    assert events(root) == [*before, *(["LicenceRefused"] if recorded else [])]


def test_the_whole_round_trip_through_the_command_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vdir, root = tmp_path / "v", tmp_path / "m"
    v = ("--vendor-dir", str(vdir))
    assert run(capsys, "vendor", "init", *v, "--name", "Reseller")[0] == 0
    assert run(capsys, "vendor", "key", *v, "--output", str(tmp_path / "vendor.pub"))[0] == 0
    assert run(capsys, "init", "--data-dir", str(root), "--vendor-key",
               str(tmp_path / "vendor.pub"))[0] == 0
    assert run(capsys, "licence", "request", "--data-dir", str(root), "--output",
               str(tmp_path / "req.json"))[0] == 0
    request = json.loads((tmp_path / "req.json").read_text())
    assert request["origin"] == load_config(root).origin
    assert request["fingerprint"].startswith("sha256:")
    assert run(capsys, "vendor", "customer", "add", *v, "Big Call")[0] == 0
    licence = tmp_path / "big.licence"
    code, out, err = run(capsys, "vendor", "licence", "issue", *v, "--customer", "Big Call",
                         "--request", str(tmp_path / "req.json"), "--seats", "PRED=150,ACD=50",
                         "--total-pred-acd", "180", "--ceiling", "125", "--campaigns", "40",
                         "--output", str(licence))
    assert code == 0, err
    terms = parse_terms(split_licence(licence.read_text())[0])
    assert terms.master_key == request["fingerprint"] and terms.serial == 1
    assert terms.limits == {"PRED": 150, "ACD": 50} and terms.total_pred_acd == 180
    assert terms.campaigns == 40 and terms.policy.ceiling_percent == 125
    assert terms.expires_at - terms.issued_at == timedelta(days=365)

    code, out, err = run(capsys, "licence", "install", "--data-dir", str(root), str(licence))
    assert code == 0 and "installed licence BIG-CALL-0001 (serial 1)" in out, err
    code, out, _ = run(capsys, "licence", "show", "--data-dir", str(root), "--json")
    shown = json.loads(out)
    assert shown["mode"] == "licensed" and shown["serial"] == 1 and shown["trial_reason"] is None
    assert shown["issuer"] == minisign_key_fingerprint((tmp_path / "vendor.pub").read_text())
    assert 364.9 < shown["days_left"] <= 365
    assert shown["pools"]["PRED+ACD"]["limit"] == 180
    # The export proves what was installed: the event carries the whole file.
    with open_ledger(load_config(root), read_only=True) as app:
        installed = [e for _, e in app.events() if type(e).__name__ == "LicenceInstalled"]
    assert [e.licence_file for e in installed] == [licence.read_text()]

    code, out, _ = run(capsys, "vendor", "customer", "list", *v, "--json")
    assert json.loads(out)["customers"] == [{"customer": "Big Call", "serial": 1,
                                             "expires_at": terms.expires_at.strftime(
                                                 "%Y-%m-%dT%H:%M:%SZ"),
                                             "master_origin": request["origin"]}]
    code, out, _ = run(capsys, "vendor", "licence", "list", *v, "--json")
    assert [(r["customer"], r["serial"]) for r in json.loads(out)["licences"]] == [("Big Call", 1)]


def test_installing_the_installed_file_again_records_nothing(
        vendor: Vendor, master: Path, capsys: pytest.CaptureFixture[str]) -> None:
    licence = vendor.install(master)
    before = events(master)
    code, out, _ = run(capsys, "licence", "install", "--data-dir", str(master), str(licence))
    assert code == 0 and "installed already: nothing recorded" in out
    assert events(master) == before


def test_one_byte_changed_is_a_bad_signature(vendor: Vendor, master: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    good = vendor.licence_for(master)
    data = bytearray(good.read_bytes())
    at = data.index(b"PRED = 100") + len("PRED = 10")
    data[at] = ord("9")  # PRED = 109
    edited = tmp_path / "edited.licence"
    edited.write_bytes(bytes(data))
    refused(capsys, master, edited, "bad signature")
    assert main(["licence", "install", "--data-dir", str(master), str(good)]) == 0


def test_a_licence_signed_by_another_vendor_key_is_refused(
        master: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = Vendor(tmp_path / "self-made")  # e.g. a customer signing its own licence
    refused(capsys, master, other.licence_for(master), "signed by another key")


def test_a_licence_bound_to_another_master_is_refused(
        vendor: Vendor, master: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    second = tmp_path / "second"
    vendor.init_master(second)
    refused(capsys, master, vendor.licence_for(second), "bound to another master")


def test_an_older_serial_is_refused(vendor: Vendor, master: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    first = vendor.licence_for(master, "PRED=100")
    vendor.install(master, "PRED=200")
    refused(capsys, master, first, "serial 1 is not above the installed serial 2")


def _signed_by_vendor(vendor: Vendor, master: Path, out: Path, **changes: object) -> Path:
    """Terms the vendor's issuing would refuse, signed with the vendor's key anyway."""
    terms = parse_terms(split_licence(vendor.licence_for(master).read_text())[0])
    key = load_signing_key(vendor.config.layout.licence_key)
    out.write_text(sign_licence(attrs.evolve(terms, **changes), key))  # type: ignore[arg-type]
    return out


def test_expired_too_small_future_and_too_long_licences_are_refused(
        vendor: Vendor, master: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    cases = [
        ({"serial": 10, "issued_at": now - timedelta(days=40),
          "expires_at": now - timedelta(days=1)}, "expired"),
        ({"serial": 11, "limits": {"PRED": 60, "ACD": 30}}, "at least 100 seats"),
        ({"serial": 12, "issued_at": now + timedelta(days=2),
          "expires_at": now + timedelta(days=100)}, "in the future"),
        ({"serial": 13, "issued_at": now, "expires_at": now + timedelta(days=400)},
         "at most one year"),
    ]
    for i, (changes, needle) in enumerate(cases):
        refused(capsys, master, _signed_by_vendor(vendor, master, tmp_path / f"{i}.licence",
                                                  **changes), needle)


def test_signed_but_malformed_terms_are_refused(vendor: Vendor, master: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    key = load_signing_key(vendor.config.layout.licence_key)
    body = "format = \"seatledger-licence/1\"\ncustomer = \"Acme\"\n"
    signature = key.sign(body.encode(), "licence").decode()
    path = tmp_path / "malformed.licence"
    path.write_text(f"{body}{BEGIN}\n{signature}{END}\n")
    refused(capsys, master, path, "malformed licence: the licence has no [seats] table")
    garbage = tmp_path / "garbage.licence"
    garbage.write_bytes(b"\x00\xffnot a licence")
    refused(capsys, master, garbage, "malformed licence: the file is not UTF-8")
    (tmp_path / "nosig.licence").write_text(body)
    refused(capsys, master, tmp_path / "nosig.licence", "no vendor signature")


def test_without_a_pinned_vendor_key_nothing_installs(
        vendor: Vendor, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "unpinned"
    assert main(["init", "--data-dir", str(root)]) == 0
    refused(capsys, root, vendor.licence_for(root), "pinned no vendor key", recorded=False)
    code, out, _ = run(capsys, "licence", "show", "--data-dir", str(root))
    assert code == 0 and "TRIAL MODE" in out


def test_the_vendor_refuses_to_issue_a_licence_below_100_seats(
        vendor: Vendor, master: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "licence", "request", "--data-dir", str(master), "--output",
               str(tmp_path / "r.json"))[0] == 0
    code, _, err = run(capsys, "vendor", "licence", "issue", "--vendor-dir", str(vendor.root),
                       "--customer", "Acme", "--request", str(tmp_path / "r.json"),
                       "--seats", "PRED=60,ACD=30")
    assert code == 1
    assert err == ("seatledger: a master/slave licence needs at least 100 seats; "
                   "this one totals 90\n")
    code, _, err = run(capsys, "vendor", "licence", "issue", "--vendor-dir", str(vendor.root),
                       "--customer", "Nobody", "--request", str(tmp_path / "r.json"),
                       "--seats", "PRED=100")
    assert code == 1 and "unknown customer 'Nobody'" in err and err.count("\n") == 1
    assert run(capsys, "vendor", "licence", "list", "--vendor-dir", str(vendor.root))[1] == \
        "no licences issued yet\n"


def test_vendor_init_refuses_an_existing_directory(
        vendor: Vendor, capsys: pytest.CaptureFixture[str]) -> None:
    key = vendor.config.layout.licence_key.read_bytes()
    code, _, err = run(capsys, "vendor", "init", "--vendor-dir", str(vendor.root))
    assert code == 1 and "already exists" in err and err.count("\n") == 1
    assert vendor.config.layout.licence_key.read_bytes() == key


def test_serials_only_grow_per_customer(vendor: Vendor, master: Path, tmp_path: Path) -> None:
    second = tmp_path / "second"
    vendor.init_master(second)
    other = Vendor(vendor.root, "Other Ltd")
    serials = [parse_terms(split_licence(p.read_text())[0]).serial for p in (
        vendor.licence_for(master), vendor.licence_for(second), other.licence_for(second),
        vendor.licence_for(master))]
    assert serials == [1, 2, 1, 3]


def test_minisign_verifies_a_licence_file(vendor: Vendor, master: Path, tmp_path: Path) -> None:
    licence = vendor.licence_for(master)
    terms, signature = split_licence(licence.read_text())
    (tmp_path / "terms.toml").write_text(terms)
    (tmp_path / "terms.toml.minisig").write_text(signature)
    tool = shutil.which("minisign")
    assert tool is not None, "minisign is missing (the CI installs it)"
    ok = subprocess.run([tool, "-V", "-p", str(vendor.key_file), "-m",
                         str(tmp_path / "terms.toml")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "seatledger licence ACME-0001 serial 1" in ok.stdout
    (tmp_path / "terms.toml").write_text(terms.replace("PRED = 100", "PRED = 900"))
    bad = subprocess.run([tool, "-V", "-p", str(vendor.key_file), "-m",
                          str(tmp_path / "terms.toml")], capture_output=True, text=True)
    assert bad.returncode != 0


def test_status_says_trial_then_the_licence_and_its_days_left(
        vendor: Vendor, master: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "status", "--data-dir", str(master))
    assert code == 0 and out.startswith("TRIAL: no vendor-signed licence is installed")
    vendor.install(master)
    capsys.readouterr()
    code, out, _ = run(capsys, "status", "--data-dir", str(master))
    assert code == 0 and out.startswith("licence ACME-0001 (serial 1)  customer Acme")
    assert "(364d 23h left)" in out or "(365d 0h left)" in out
