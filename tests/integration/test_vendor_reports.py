"""``seatledger vendor customers`` and ``vendor report billing|expiring`` through the real
command line, over the hand-computed month of :mod:`test_vendor_analytics`."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from ledger import LedgerApp, ManualClock
from seatledger.cli.main import main
from seatledger.vendor.findings import Findings, Kind, NewFinding
from seatledger.vendor.home import init_vendor_home, load_vendor_config
from seatledger.vendor.registry import VendorStore, customers, licences
from seatledger.vendor.reports import expiring_licences
from tests.integration.test_vendor_analytics import Shipper, small_month, vendor_records

NOW = datetime(2026, 4, 2, 9, tzinfo=UTC)


def add_licence(store: VendorStore, customer: str, serial: int, expires: datetime,
                master_key: str = "sha256:" + "ab" * 32) -> None:
    """A registry row as ``vendor licence issue`` records it (the file itself is not read)."""
    with store.transaction() as conn:
        if not conn.execute(sa.select(customers).where(customers.c.name == customer)).first():
            conn.execute(customers.insert().values(name=customer, added_at="2026-01-01T00:00:00Z"))
        conn.execute(licences.insert().values(
            customer=customer, serial=serial, licence_id=f"{customer.upper()}-{serial:04d}",
            issued_at="2026-01-01T00:00:00Z", expires_at=expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            master_origin="master.example", master_key=master_key, export_key="RWQ" + customer,
            limits="PRED=98,ACD=1,PBX=1", sha256=f"{customer}{serial}".ljust(64, "0"),
            file="(test)"))


@pytest.fixture
def home(tmp_path: Path, open_ledger: Callable[..., LedgerApp], clock: ManualClock) -> Path:
    """A vendor home holding Acme's month (and its licences, serials 1 and 2)."""
    root = tmp_path / "vendor"
    config = init_vendor_home(root, name="Reseller")
    with VendorStore.open(config) as store:
        add_licence(store, "Acme", 1, NOW + timedelta(days=10))
        add_licence(store, "Acme", 2, NOW + timedelta(days=30, hours=1),
                    master_key="sha256:" + "cd" * 32)
        shipper = Shipper(open_ledger(), vendor_records(store), "Acme")
        small_month(shipper.app, clock, shipper.ship)
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_billing_as_csv_has_the_hand_computed_figures(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "vendor", "report", "billing", "--vendor-dir", str(home),
                         "--month", "2026-03", "--format", "csv")
    assert code == 0, err
    rows = {(r["customer"], r["pool"]): r for r in csv.DictReader(io.StringIO(out))}
    assert set(rows) == {("Acme", p) for p in ("all", "PRED", "ACD", "PBX", "VIR")}
    acd = rows[("Acme", "ACD")]
    assert (acd["agent_hours"], acd["peak"], acd["limit"]) == ("6.0000", "2", "1")
    assert (acd["over_limit_minutes"], acd["overuse_agent_hours"], acd["over_limit_days"]) == (
        "180.00", "3.0000", "1")
    assert acd["peak_at"] == "2026-03-02T08:00:00+00:00"
    assert rows[("Acme", "VIR")]["refusals"] == "class_not_licensed=1"
    whole = rows[("Acme", "all")]
    assert (whole["agent_hours"], whole["over_limit_days"], whole["exports_received"]) == (
        "19.0000", "2", "2")


def test_billing_as_json_table_and_html(home: Path, capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    code, out, _ = run(capsys, "vendor", "report", "billing", "--vendor-dir", str(home),
                       "--month", "2026-03", "--json")
    assert code == 0
    [acme] = json.loads(out)["customers"]
    pools = {p["pool"]: p for p in acme["pools"]}
    assert pools["PBX"]["overuse_agent_hours"] == 2.0 and acme["refused"] == 1

    code, out, _ = run(capsys, "vendor", "report", "billing", "--vendor-dir", str(home),
                       "--month", "2026-03", "--customer", "Acme")
    assert code == 0
    acd_line = next(line for line in out.splitlines() if line.split()[:1] == ["ACD"])
    assert acd_line.split()[:4] == ["ACD", "6.00", "2", "2026-03-02"]

    page = tmp_path / "billing.html"
    code, _, err = run(capsys, "vendor", "report", "billing", "--vendor-dir", str(home),
                       "--month", "2026-03", "--format", "html", "--output", str(page))
    assert code == 0 and "wrote" in err
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<script" not in text
    assert "<td>ACD</td><td class=n>6.00</td>" in text


def test_customers_shows_the_latest_licence_last_export_and_open_findings(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with VendorStore.open(load_vendor_config(home)) as store, store.transaction() as conn:
        Findings(store.engine).open(conn, [
            NewFinding.of("Acme", Kind.FORK, "2026-03-31", "a day that does not continue"),
            NewFinding.of("Acme", Kind.GRACE_OPENED, "2026-03-02", "ACD over its limit")], NOW)
    code, out, err = run(capsys, "vendor", "customers", "--vendor-dir", str(home), "--json")
    assert code == 0, err
    [acme] = json.loads(out)["customers"]
    assert (acme["customer"], acme["serial"], acme["licence_id"]) == ("Acme", 2, "ACME-0002")
    assert acme["master_key"] == "sha256:" + "cd" * 32
    assert acme["expires_at"].startswith("2026-05-02")
    assert acme["last_export_day"] == "2026-04-01"
    assert acme["open_findings"] == 2
    code, out, _ = run(capsys, "vendor", "customers", "--vendor-dir", str(home))
    assert code == 0 and "ACME-0002" in out and "2026-04-01" in out


def test_expiring_lists_latest_licences_within_the_window_soonest_first(
        tmp_path: Path) -> None:
    config = init_vendor_home(tmp_path / "v", name="R")
    with VendorStore.open(config) as store:
        add_licence(store, "Soon", 1, NOW + timedelta(days=59))
        add_licence(store, "Sooner", 1, NOW + timedelta(days=3))
        add_licence(store, "Later", 1, NOW + timedelta(days=61))
        add_licence(store, "Gone", 1, NOW - timedelta(days=1))
        add_licence(store, "Renewed", 1, NOW + timedelta(days=5))
        add_licence(store, "Renewed", 2, NOW + timedelta(days=365))
        found = expiring_licences(store.engine, now=NOW)
    assert [(x.customer, x.days_left) for x in found] == [("Sooner", 3), ("Soon", 59)]


def test_user_errors_are_one_line(home: Path, capsys: pytest.CaptureFixture[str],
                                  tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as bad:
        main(["vendor", "report", "billing", "--vendor-dir", str(home), "--month", "March"])
    assert bad.value.code == 2
    assert "bad month 'March'" in capsys.readouterr().err
    code, out, err = run(capsys, "vendor", "report", "billing", "--vendor-dir", str(home),
                         "--month", "2026-03", "--customer", "Nobody")
    assert (code, out) == (1, "")
    assert err.strip().splitlines() == ["seatledger: unknown customer 'Nobody': neither "
                                        "registered nor imported"]
    (home / "vendor.db").unlink()
    code, _, err = run(capsys, "vendor", "customers", "--vendor-dir", str(home))
    assert code == 1 and len(err.strip().splitlines()) == 1 and "is missing" in err


def test_rebuilding_the_analytics_gives_the_same_billing(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    billing = ("vendor", "report", "billing", "--vendor-dir", str(home), "--month", "2026-03",
               "--format", "csv")
    code, before, _ = run(capsys, *billing)
    assert code == 0 and "ACD" in before
    code, out, _ = run(capsys, "vendor", "report", "rebuild", "--vendor-dir", str(home))
    applied = int(out.split("from ")[1].split()[0])
    assert code == 0 and applied > 0
    assert run(capsys, *billing)[1] == before
