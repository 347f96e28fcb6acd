"""The vendor bills a chained seat once, at the master closest to the agent (docs/chaining.md).

Two customers, each a real ledger exporting through the project's own export builder with a
licence the vendor issued (:class:`tests.integration.test_vendor_import.Master`): ``lower``
is chained under ``upper`` as its site ``down`` (``lower``'s ledger records
``UpstreamLinked(upstream="upper", site="down")``), so each of lower's seats is also a seat
at upper's site ``down``, user ``<lower's site>/<user>``. Upper has two ordinary sites as
well: ``north``, and ``branch``, whose users look chained (``x/y1``) but which no export of
a downstream master names.

Upper PRED=100, lower PRED=100; 2026-03-02:
  09:00  lower: 4 seats at north (a1-a4); upper: the same 4 at down (north/a1-north/a4),
         and 97 at north (u1-u97): 101 in use, 1 over the limit
  10:00  upper: 1 at branch (x/y1): 102 in use, 2 over
  13:00  upper: branch released: 101, 1 over
  14:00  upper: north released: 4
  15:00  lower and upper: the 4 chained seats released
Lower: 4 x 6 h = 24 agent-hours, billed at lower.
Upper: down 4 x 6 h = 24 (chained: billed at lower), north 97 x 5 h = 485, branch 1 x 3 h =
3: billed 488. Over-use: 1 h x 1 + 3 h x 2 + 1 h x 1 = 8 agent-hours, 09:00-14:00 (300
min); down's share of it, by its 4 seats of the 101 or 102 in use: 2 x 4/101 + 3 x 2 x 4/102
agent-hours. Upper's peak, 102 at 10:00, counts the chained seats.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ledger import AcquireSeat, LedgerApp, ManualClock, ReleaseSeat
from seatledger.cli.main import main
from seatledger.vendor.analytics import AnalyticsRunner
from seatledger.vendor.home import init_vendor_home
from seatledger.vendor.imports import VendorImport
from seatledger.vendor.records import VendorRecords
from seatledger.vendor.registry import VendorStore, licences
from seatledger.vendor.reports import BillingReport, CustomerBilling, billing_report
from tests.integration.test_vendor_analytics import Shipper
from tests.integration.test_vendor_import import START, Master

CA = "ab" * 32
NORTH = [f"u{i}" for i in range(1, 98)]
DOWN_OVERUSE_HOURS = 8 / 101 + 24 / 102


@pytest.fixture(params=["sqlite", "postgres"])
def any_store_url(request: pytest.FixtureRequest) -> str | None:
    """The vendor's store on its default SQLite file, and on the real PostgreSQL."""
    return None if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


def link_upstream(app: LedgerApp, upstream: str, site: str, ca: str = CA) -> None:
    """The chained master's record of its upstream, as its first sync there records it."""
    assert app._command(lambda licence, now: licence.link_upstream(now, upstream, site, ca))


def at(hours: int) -> datetime:
    return START + timedelta(hours=hours - 9)


def seats(app: LedgerApp, site: str, users: list[str], *, release: bool = False) -> None:
    commands = ([ReleaseSeat(site, u) for u in users] if release
                else [AcquireSeat(site, u, "PRED", "t", "c") for u in users])
    outcomes = app.execute(commands)
    assert len(outcomes) == len(users)


def chained_day(upper: Master, lower: Master) -> None:
    """The day in the module docstring, both masters on the same hours."""
    chained = ["a1", "a2", "a3", "a4"]
    upper.app.enrol_site("down")
    upper.app.enrol_site("branch")
    link_upstream(lower.app, "upper", "down")

    def both(hour: int) -> None:
        upper.clock.set(at(hour))
        lower.clock.set(at(hour))

    both(9)
    seats(lower.app, "north", chained)
    seats(upper.app, "down", [f"north/{u}" for u in chained])
    seats(upper.app, "north", NORTH)
    both(10)
    seats(upper.app, "branch", ["x/y1"])
    both(13)
    seats(upper.app, "branch", ["x/y1"], release=True)
    both(14)
    seats(upper.app, "north", NORTH, release=True)
    both(15)
    seats(lower.app, "north", chained, release=True)
    seats(upper.app, "down", [f"north/{u}" for u in chained], release=True)
    both(24 + 2)  # the next day, 02:00: the day is over and can be exported


def march(store: VendorStore) -> dict[str, CustomerBilling]:
    report: BillingReport = billing_report(store.engine, "2026-03", as_of=date(2026, 3, 3))
    return {c.customer: c for c in report.customers}


def import_all(vendor: Any, store: VendorStore) -> None:
    summary = VendorImport(vendor, store, now=at(24 + 3)).run([vendor.layout.inbox])
    assert summary.of("imported")
    AnalyticsRunner(VendorRecords(vendor, store.engine)).run_once()


def billing(capsys: pytest.CaptureFixture[str], home: Path, *options: str) -> str:
    code = main(["vendor", "report", "billing", "--vendor-dir", str(home), "--month",
                 "2026-03", *options])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_a_chained_seat_is_billed_once_at_the_downstream_master(
        tmp_path: Path, any_store_url: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    vendor = init_vendor_home(tmp_path / "vendor", name="Reseller", store_url=any_store_url)
    with VendorStore.open(vendor) as store:
        upper = Master.create(tmp_path, "upper", vendor, store, install=lambda s: s)
        lower = Master.create(tmp_path, "lower", vendor, store, install=lambda s: s)
        chained_day(upper, lower)

        # Upper's export alone: nothing says that down is chained, so it is all billed.
        assert upper.export(vendor.layout.inbox) == [START.date()]
        import_all(vendor, store)
        alone = march(store)["upper"]
        assert (alone.agent_hours, alone.chained_agent_hours, alone.chained_sites) == (
            512.0, 0.0, ())

        # Lower's export names upper's origin and the site: down is billed at lower.
        assert lower.export(vendor.layout.inbox) == [START.date()]
        import_all(vendor, store)
        bills = march(store)
        up, low = bills["upper"], bills["lower"]
        assert up.agent_hours == 488.0  # north 485 + branch 3 (no export names branch)
        assert up.chained_agent_hours == 24.0
        [down] = up.chained_sites
        assert (down.site, down.billed_at, down.agent_hours, down.recorded_agent_hours) == (
            "down", ("lower",), 24.0, 24.0)
        assert down.overuse_agent_hours == pytest.approx(DOWN_OVERUSE_HOURS, abs=1e-5)
        [pred] = up.pools
        assert (pred.agent_hours, pred.chained_agent_hours) == (488.0, 24.0)
        assert (pred.peak, pred.peak_at) == (102, at(10))  # the chained seats are upper's too
        assert (pred.overuse_agent_hours, pred.over_limit_minutes) == (8.0, 300.0)
        assert pred.chained_overuse_agent_hours == pytest.approx(DOWN_OVERUSE_HOURS, abs=1e-5)
        assert up.chained_under == ()
        assert (low.agent_hours, low.chained_agent_hours, low.chained_sites) == (24.0, 0.0, ())
        assert low.chained_under == ("upper:down",)
        assert {p.pool: p.peak for p in low.pools} == {"PRED": 4}

    # The command line, in each format; a rebuild gives the same.
    home = vendor.root
    out = billing(capsys, home, "--format", "csv")
    rows = {(r["customer"], r["pool"]): r for r in csv.DictReader(io.StringIO(out))}
    assert list(next(csv.reader(io.StringIO(out))))[-4:] == [
        "chained_agent_hours", "chained_overuse_agent_hours", "chained_sites", "chained_under"]
    whole = rows[("upper", "all")]
    assert (whole["agent_hours"], whole["chained_agent_hours"], whole["chained_sites"]) == (
        "488.0000", "24.0000", "down=lower")
    assert rows[("upper", "PRED")]["chained_agent_hours"] == "24.0000"
    assert rows[("upper", "PRED")]["chained_overuse_agent_hours"] == "0.3145"
    assert (rows[("lower", "all")]["agent_hours"], rows[("lower", "all")]["chained_under"]) == (
        "24.0000", "upper:down")
    assert main(["vendor", "report", "rebuild", "--vendor-dir", str(home)]) == 0
    capsys.readouterr()
    assert billing(capsys, home, "--format", "csv") == out

    [up_json] = json.loads(billing(capsys, home, "--json", "--customer", "upper"))["customers"]
    assert up_json["chained_sites"] == [{
        "site": "down", "billed_at": ["lower"], "agent_hours": 24.0,
        "recorded_agent_hours": 24.0,
        "overuse_agent_hours": pytest.approx(DOWN_OVERUSE_HOURS, abs=1e-5)}]
    assert up_json["agent_hours"] == 488.0

    table = billing(capsys, home, "--customer", "upper")
    [line] = [x for x in table.splitlines() if x.split()[:2] == ["upper", "all"]]
    assert line.split()[2] == "488.00" and line.split()[-2:] == ["24.00", "down=lower"]
    page = billing(capsys, home, "--format", "html")
    assert "<th>chained agent-h</th>" in page and "<td>under upper:down</td>" in page


def test_a_site_named_by_an_export_without_its_seats_stays_billed_upstream(
        tmp_path: Path) -> None:
    """A downstream master takes off its upstream's bill no more than its own seat time: here
    ``shell`` names upper's site ``down``, 2 seats x 3 h, with 1 seat of its own for 2 h."""
    vendor = init_vendor_home(tmp_path / "vendor", name="Reseller")
    with VendorStore.open(vendor) as store:
        upper = Master.create(tmp_path, "upper", vendor, store, install=lambda s: s)
        shell = Master.create(tmp_path, "shell", vendor, store, install=lambda s: s)
        upper.app.enrol_site("down")
        link_upstream(shell.app, "upper", "down")
        seats(upper.app, "down", ["north/a1", "north/a2"])
        seats(shell.app, "north", ["a1"])
        for m in (upper, shell):
            m.clock.advance(hours=2)
        seats(shell.app, "north", ["a1"], release=True)
        upper.clock.advance(hours=1)
        seats(upper.app, "down", ["north/a1", "north/a2"], release=True)
        for m in (upper, shell):
            m.clock.set(at(24 + 2))
            m.export(vendor.layout.inbox)
        import_all(vendor, store)
        bills = march(store)
    up, sh = bills["upper"], bills["shell"]
    assert (up.agent_hours, up.chained_agent_hours) == (4.0, 2.0)
    [down] = up.chained_sites
    assert (down.agent_hours, down.recorded_agent_hours, down.billed_at) == (2.0, 6.0, ("shell",))
    assert sh.agent_hours == 2.0
    assert up.agent_hours + up.chained_agent_hours + sh.agent_hours == 8.0  # nothing lost


def test_an_export_naming_an_origin_no_licence_has_changes_nothing(
        tmp_path: Path) -> None:
    vendor = init_vendor_home(tmp_path / "vendor", name="Reseller")
    with VendorStore.open(vendor) as store:
        upper = Master.create(tmp_path, "upper", vendor, store, install=lambda s: s)
        lower = Master.create(tmp_path, "lower", vendor, store, install=lambda s: s)
        upper.app.enrol_site("down")
        link_upstream(lower.app, "someone-else", "down")
        seats(upper.app, "down", ["north/a1"])
        seats(lower.app, "north", ["a1"])
        for m in (upper, lower):
            m.clock.advance(hours=1)
        seats(upper.app, "down", ["north/a1"], release=True)
        seats(lower.app, "north", ["a1"], release=True)
        for m in (upper, lower):
            m.clock.set(at(24 + 2))
            m.export(vendor.layout.inbox)
        import_all(vendor, store)
        bills = march(store)
    assert (bills["upper"].agent_hours, bills["upper"].chained_agent_hours) == (1.0, 0.0)
    assert bills["lower"].chained_under == ()


def register(store: VendorStore, customer: str, origin: str) -> None:
    """A registry row as ``vendor licence issue`` records it (the file itself is not read)."""
    store.add_customer(customer)
    with store.transaction() as conn:
        conn.execute(licences.insert().values(
            customer=customer, serial=1, licence_id=f"{customer.upper()}-0001",
            issued_at="2026-01-01T00:00:00Z", expires_at="2027-01-01T00:00:00Z",
            master_origin=origin, master_key="sha256:" + "ab" * 32, export_key="RWQ" + customer,
            limits="PRED=100", sha256=customer.ljust(64, "0"), file="(test)"))


def test_a_link_counts_in_the_months_it_is_in_force(
        tmp_path: Path, open_ledger: Callable[..., LedgerApp], clock: ManualClock) -> None:
    """Lower is under upper from March 2 until April 20, then under another master: upper's
    site down is chained in March and April, and billed at upper again in May."""
    vendor = init_vendor_home(tmp_path / "vendor", name="Reseller")
    with VendorStore.open(vendor) as store:
        register(store, "upper", "upper.example")
        records = VendorRecords(vendor, store.engine)
        up = Shipper(open_ledger(f"sqlite:///{tmp_path}/up.db"), records, "upper")
        low = Shipper(open_ledger(f"sqlite:///{tmp_path}/low.db",
                                  checkpoint_file=tmp_path / "low.checkpoint"), records, "lower")
        clock.set(datetime(2026, 3, 2, 8, tzinfo=UTC))
        for app in (up.app, low.app):
            app.issue_licence(customer="x", limits={"PRED": 100})
        up.app.enrol_site("down")
        low.app.enrol_site("north")
        link_upstream(low.app, "upper.example", "down")
        for month in (3, 4, 5):
            clock.set(datetime(2026, month, 12, 9, tzinfo=UTC))
            seats(up.app, "down", ["north/a1"])
            seats(low.app, "north", ["a1"])
            clock.advance(hours=2)
            seats(up.app, "down", ["north/a1"], release=True)
            seats(low.app, "north", ["a1"], release=True)
            if month == 4:
                clock.set(datetime(2026, 4, 20, tzinfo=UTC))
                link_upstream(low.app, "other.example", "lower")
        up.ship()
        low.ship()
        AnalyticsRunner(records).run_once()
        got = {}
        for label in ("2026-03", "2026-04", "2026-05"):
            report = billing_report(store.engine, label, as_of=date(2026, 6, 1))
            bills = {c.customer: c for c in report.customers}
            got[label] = (bills["upper"].agent_hours, bills["upper"].chained_agent_hours,
                          bills["lower"].agent_hours, bills["lower"].chained_under)
    assert got == {"2026-03": (0.0, 2.0, 2.0, ("upper:down",)),
                   "2026-04": (0.0, 2.0, 2.0, ("upper:down",)),  # other.example: no licence
                   "2026-05": (2.0, 0.0, 2.0, ())}
