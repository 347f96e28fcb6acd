"""Reseller analytics over the vendor's store, on SQLite and on the real PostgreSQL.

The customer's history is made by the real ledger on a manual clock and its records are
appended to ``vendor_records`` as an import would. The month is small enough to compute by
hand; each expected figure is next to the timeline that gives it.

Licence PRED=98, ACD=1, PBX=1 (100 seats; PRED+ACD not capped); site north.
  2026-03-02 06:00  licence issued, site enrolled
             08:00  2 ACD log on (the second one over the limit: grace opens)
             09:00  3 PRED log on; 1 VIR refused (class_not_licensed)
             11:00  both ACD log off        ACD: 2 seats x 3 h, 1 over the limit for 3 h
             12:00  the 3 PRED log off      PRED: 3 seats x 3 h
  2026-03-31 22:00  2 PBX log on (the second over the limit)
  2026-04-01 02:00  both PBX log off        PBX: 2 seats x 4 h, 2 h in March, 2 h in April
Export days with records: 03-02, 03-31, 04-01.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import attrs
import pytest
import sqlalchemy as sa

from ledger import AcquireSeat, LedgerApp, ManualClock, ReleaseSeat
from ledger.persistence.codec import decode_payload
from seatledger.vendor.analytics import (
    AnalyticsError,
    AnalyticsRunner,
    ConcurrentAnalyticsError,
    hour_rows,
    site_months,
    tracking,
    usage_months,
)
from seatledger.vendor.home import VendorConfig, init_vendor_home
from seatledger.vendor.records import VendorRecords
from seatledger.vendor.registry import RegistryError, VendorStore
from seatledger.vendor.reports import BillingReport, billing_report

MARCH = datetime(2026, 3, 2, tzinfo=UTC)


def at(day: datetime, hhmm: str) -> datetime:
    hours, minutes = map(int, hhmm.split(":"))
    return day + timedelta(hours=hours, minutes=minutes)


@attrs.define
class Shipper:
    """Appends a ledger's new records to the vendor's store, as the importer does."""

    app: LedgerApp
    records: VendorRecords
    customer: str
    sent: int = 0

    def ship(self) -> int:
        rows = []
        for n, payload in self.app.records(self.sent + 1):
            originator = UUID(str(n.originator_id))
            e = decode_payload(originator, n.originator_version, n.topic, payload)
            rows.append((n.id, originator, n.originator_version, n.topic, payload,
                         e.timestamp.astimezone(UTC).strftime("%Y-%m-%d")))
        shipped = 0
        with self.records.engine.begin() as conn:
            for day in sorted({r[5] for r in rows}):
                shipped += self.records.append(conn, self.customer, day,
                                               [r[:5] for r in rows if r[5] == day])
        if rows:
            self.sent = rows[-1][0]
        return shipped


def small_month(app: LedgerApp, clock: ManualClock, ship: Callable[[], Any],
                others: Sequence[tuple[LedgerApp, int]] = ()) -> None:
    """The history in the module docstring; ``ship`` runs after each step. ``others`` are
    more customers' ledgers living the same month, each with its own number of ACD seats
    logging on at 08:00 (instead of 2)."""
    parties = [(app, 2), *others]
    clock.set(at(MARCH, "06:00"))
    for i, (ledger, _acd) in enumerate(parties):
        ledger.issue_licence(customer=f"C{i}", limits={"PRED": 98, "ACD": 1, "PBX": 1})
        ledger.enrol_site("north")
    ship()

    def acd(n: int) -> list[str]:
        return [f"a{i}" for i in range(1, n + 1)]

    steps: list[tuple[datetime, Callable[[int], list[Any]]]] = [
        (at(MARCH, "08:00"), lambda n: [AcquireSeat("north", u, "ACD", "t", "c") for u in acd(n)]),
        (at(MARCH, "09:00"), lambda n: [AcquireSeat("north", u, "PRED", "t", "c")
                                        for u in ("p1", "p2", "p3")]
         + [AcquireSeat("north", "v1", "VIR", "t", "c")]),
        (at(MARCH, "11:00"), lambda n: [ReleaseSeat("north", u) for u in acd(n)]),
        (at(MARCH, "12:00"), lambda n: [ReleaseSeat("north", u) for u in ("p1", "p2", "p3")]),
        (datetime(2026, 3, 31, 22, tzinfo=UTC),
         lambda n: [AcquireSeat("north", u, "PBX", "t", "c") for u in ("x1", "x2")]),
        (datetime(2026, 4, 1, 2, tzinfo=UTC),
         lambda n: [ReleaseSeat("north", u) for u in ("x1", "x2")]),
    ]
    for when, commands in steps:
        clock.set(when)
        for ledger, n in parties:
            ledger.execute(commands(n))
        ship()


@pytest.fixture(params=["sqlite", "postgres"])
def vendor(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VendorStore]:
    """A vendor home whose store is the SQLite file or a fresh PostgreSQL database."""
    url = None if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))
    config = init_vendor_home(tmp_path / "vendor", name="Reseller", store_url=url)
    with VendorStore.open(config) as store:
        yield store


def vendor_records(store: VendorStore) -> VendorRecords:
    config: VendorConfig = store.config
    return VendorRecords(config, store.engine)


@pytest.fixture
def shipped(vendor: VendorStore, open_ledger: Callable[..., LedgerApp],
            clock: ManualClock) -> VendorStore:
    app = open_ledger()
    shipper = Shipper(app, vendor_records(vendor), "Acme")
    small_month(app, clock, shipper.ship)
    return vendor


def march(store: VendorStore, customer: str | None = None) -> BillingReport:
    return billing_report(store.engine, "2026-03", as_of=date(2026, 4, 2), customer=customer)


def figures(report: BillingReport) -> dict[str, Any]:
    """The report as plain values (pools by name) for exact comparison."""
    return {c.customer: {**{k: v for k, v in attrs.asdict(c).items() if k != "pools"},
                         "pools": {p.pool: attrs.asdict(p) for p in c.pools}}
            for c in report.customers}


def test_march_billing_is_the_hand_computed_one(shipped: VendorStore) -> None:
    assert AnalyticsRunner(vendor_records(shipped)).run_once() > 0
    report = march(shipped)
    [acme] = report.customers
    pools = {p.pool: p for p in acme.pools}
    assert list(pools) == ["PRED", "ACD", "PBX", "VIR"]  # PRED+ACD is not capped: not shown

    acd = pools["ACD"]  # 2 seats 08:00-11:00 on a limit of 1
    assert acd.agent_hours == 6.0
    assert (acd.peak, acd.peak_at) == (2, at(MARCH, "08:00"))
    assert acd.limit == 1
    assert acd.over_limit_minutes == 180.0
    assert acd.overuse_agent_hours == 3.0
    assert acd.over_limit_days == 1
    assert (acd.grants, acd.overuse_grants, acd.offline_grants) == (2, 1, 0)

    pred = pools["PRED"]  # 3 seats 09:00-12:00, limit 98
    assert (pred.agent_hours, pred.peak, pred.peak_at) == (9.0, 3, at(MARCH, "09:00"))
    assert (pred.over_limit_minutes, pred.overuse_agent_hours, pred.over_limit_days) == (0, 0, 0)

    pbx = pools["PBX"]  # 2 seats from 03-31 22:00 to the month's end
    assert (pbx.agent_hours, pbx.peak, pbx.peak_at) == (
        4.0, 2, datetime(2026, 3, 31, 22, tzinfo=UTC))
    assert (pbx.over_limit_minutes, pbx.overuse_agent_hours, pbx.over_limit_days) == (
        120.0, 2.0, 1)

    assert pools["VIR"].refusals == {"class_not_licensed": 1}
    assert pools["VIR"].agent_hours == 0
    assert acme.refusals == {"class_not_licensed": 1}
    assert acme.agent_hours == 19.0  # 6 + 9 + 4
    assert acme.over_limit_days == 2  # 03-02 and 03-31
    assert acme.over_limit_minutes == 300.0
    # Export days 03-02 and 03-31 came in; from 03-02 to 03-31 (30 days) were due.
    assert (acme.exports_received, acme.exports_missing) == (2, 28)


def test_april_gets_the_hours_after_midnight(shipped: VendorStore) -> None:
    AnalyticsRunner(vendor_records(shipped)).run_once()
    [acme] = billing_report(shipped.engine, "2026-04", as_of=date(2026, 4, 2)).customers
    pbx = {p.pool: p for p in acme.pools}["PBX"]  # 2 seats 00:00-02:00 on a limit of 1
    assert (pbx.agent_hours, pbx.peak, pbx.peak_at) == (
        4.0, 2, datetime(2026, 4, 1, tzinfo=UTC))
    assert (pbx.over_limit_minutes, pbx.overuse_agent_hours, pbx.over_limit_days) == (
        120.0, 2.0, 1)
    assert pbx.grants == 0
    assert (acme.exports_received, acme.exports_missing) == (1, 0)  # 04-01, due: 04-01


def test_one_record_per_batch_with_a_new_runner_each_time_gives_the_same(
        shipped: VendorStore) -> None:
    records = vendor_records(shipped)
    applied = 0
    while _one_batch(records):
        applied += 1
    assert applied == AnalyticsRunner(records).position() > 10
    step_by_step = figures(march(shipped))
    assert step_by_step["Acme"]["pools"]["ACD"]["overuse_agent_hours"] == 3.0
    AnalyticsRunner(records).rebuild()
    assert figures(march(shipped)) == step_by_step


def _one_batch(records: VendorRecords) -> int:
    """Apply the next record with a fresh runner, whose state comes from the tables only."""
    runner = AnalyticsRunner(records, batch_size=1)
    before = runner.position()
    batch = list(records.read(after_position=before, limit=1))
    if batch:
        runner._apply(before, batch)
    return len(batch)


class Crash(Exception):
    pass


def test_a_crash_before_commit_loses_nothing_and_counts_nothing_twice(
        shipped: VendorStore) -> None:
    records = vendor_records(shipped)
    clean = AnalyticsRunner(records)
    clean.run_once()
    expected = figures(march(shipped))
    hours = _hours(shipped)

    def crash_on_third(stage: str, n: int) -> None:
        if stage == "applied" and n == 3:
            raise Crash

    crashing = AnalyticsRunner(records, batch_size=4, batch_hook=crash_on_third)
    with shipped.engine.begin() as conn:  # start over, as a rebuild would
        for table in (*_tables(),):
            conn.execute(table.delete())
        conn.execute(tracking.delete())
    with pytest.raises(Crash):
        crashing.run_once()
    position = crashing.position()
    assert position == 8  # two batches of four committed
    crashing.batch_hook = None
    crashing.run_once()  # the same runner, resuming from the tables
    assert figures(march(shipped)) == expected
    assert _hours(shipped) == hours


def _tables() -> tuple[sa.Table, ...]:
    from seatledger.vendor.analytics import TABLES
    return TABLES


def _hours(store: VendorStore) -> list[tuple[Any, ...]]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            sa.select(hour_rows).order_by(hour_rows.c.customer, hour_rows.c.pool,
                                          hour_rows.c.hour))]


def test_rows_an_earlier_version_left_are_replaced_by_a_replay_from_the_start(
        shipped: VendorStore) -> None:
    records = vendor_records(shipped)
    runner = AnalyticsRunner(records)
    runner.run_once()
    expected, position = figures(march(shipped)), runner.position()
    with shipped.engine.begin() as conn:  # the store as the version before sites left it
        conn.execute(tracking.delete())
        conn.execute(tracking.insert().values(name="analytics", position=position))
        conn.execute(usage_months.update().values(agent_us=usage_months.c.agent_us + 1))
        conn.execute(site_months.delete())
    assert AnalyticsRunner(records).pending() == position  # nothing applied in this version
    assert AnalyticsRunner(records).run_once() == position
    assert figures(march(shipped)) == expected
    with shipped.engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(sa.select(tracking))] == [
            ("analytics-2", position)]
        assert conn.execute(sa.select(sa.func.count()).select_from(site_months)).scalar()


def test_a_second_runner_behind_the_first_loses_the_race(shipped: VendorStore) -> None:
    records = vendor_records(shipped)
    first, second = AnalyticsRunner(records), AnalyticsRunner(records)
    batch = list(records.read(after_position=0, limit=2))
    first._apply(0, batch)
    with pytest.raises(ConcurrentAnalyticsError):
        second._apply(0, batch)
    second.run_once()  # it reloads and carries on from the stored position
    first.run_once()
    AnalyticsRunner(records).run_once()
    report = figures(march(shipped))
    AnalyticsRunner(records).rebuild()
    assert figures(march(shipped)) == report


def test_interleaved_customers_are_kept_apart(
        vendor: VendorStore, open_ledger: Callable[..., LedgerApp], clock: ManualClock,
        tmp_path: Path) -> None:
    records = vendor_records(vendor)
    acme = open_ledger(f"sqlite:///{tmp_path}/acme.db")
    globex = open_ledger(f"sqlite:///{tmp_path}/globex.db",
                         checkpoint_file=tmp_path / "globex.checkpoint")
    a, g = Shipper(acme, records, "Acme"), Shipper(globex, records, "Globex")

    def ship_both() -> None:  # the two customers' records arrive turn about
        a.ship()
        g.ship()

    # Globex: 3 ACD seats 08:00-11:00 on a limit of 1, so 2 x 3 h over the limit.
    small_month(acme, clock, ship_both, others=[(globex, 3)])
    with vendor.engine.connect() as conn:
        order = [r[0] for r in conn.execute(sa.text(
            "SELECT customer FROM vendor_records ORDER BY position"))]
    assert order.index("Globex") < len(order) - order[::-1].index("Acme") - 1  # interleaved
    AnalyticsRunner(records, batch_size=5).run_once()
    report = figures(march(vendor))
    assert set(report) == {"Acme", "Globex"}
    assert report["Globex"]["pools"]["ACD"]["overuse_agent_hours"] == 6.0
    assert report["Globex"]["pools"]["ACD"]["agent_hours"] == 9.0
    assert report["Acme"]["pools"]["ACD"]["overuse_agent_hours"] == 3.0
    assert report["Acme"]["agent_hours"] == report["Globex"]["agent_hours"] - 3.0
    assert figures(march(vendor, "Globex"))["Globex"] == report["Globex"]


def test_a_bad_month_or_an_unknown_customer_is_refused(shipped: VendorStore) -> None:
    AnalyticsRunner(vendor_records(shipped)).run_once()
    with pytest.raises(RegistryError, match="bad month '2026-13'"):
        billing_report(shipped.engine, "2026-13", as_of=date(2026, 4, 2))
    with pytest.raises(RegistryError, match="unknown customer 'Nobody'"):
        march(shipped, "Nobody")


def test_records_out_of_order_are_refused(shipped: VendorStore) -> None:
    records = vendor_records(shipped)
    batch = list(records.read(limit=3))
    runner = AnalyticsRunner(records)
    with pytest.raises(AnalyticsError, match="arrived after record"):
        runner._apply(0, [batch[1], batch[0]])
    assert runner.position() == 0  # nothing of the batch was kept
