"""Hours licences against a real store: the live-status view's balances always equal the
ledger's, replaying the log and reopening from a snapshot rebuild them exactly, and status
and the usage report show hours used and left.

The random command sequences are the live-status suite's, on a vendor-style licence that
gives PRED a concurrent limit and agent-hours, and PBX agent-hours alone.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import AcquireSeat, ConnectSite, DisconnectSite, LedgerApp, Licence, ManualClock, Tick
from ledger.domain.hours import US_PER_HOUR
from ledger.domain.terms import ExportObligation, LicenceTerms
from projections import ProjectionRunner, Status, read_status
from projections.render import render_status_table, usage_table
from tests.integration.test_projections_live_status import apply
from tests.strategies import SITES, master_operations, sampled_users

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
USERS = sampled_users(4)
CLASSES = ("PRED", "PRED", "ACD", "PBX")


def terms(app: LedgerApp, serial: int, hours: dict[str, int], issued: datetime) -> LicenceTerms:
    return LicenceTerms(customer="c", licence_id=f"C-{serial:04d}", serial=serial,
                        issued_at=issued, expires_at=issued + timedelta(days=300),
                        limits={"PRED": 2, "ACD": 1, "VIR": 99}, master_origin="m",
                        master_key=app.master_key, export=ExportObligation(("age1x",)),
                        hours=hours)


def install(app: LedgerApp, serial: int, hours: dict[str, int], issued: datetime) -> None:
    assert app.install_licence(terms(app, serial, hours, issued), licence_file=f"licence {serial}",
                               sha256=f"{serial:064x}", issuer="vendor")


def open_app(path: Path, clock: ManualClock, keys: dict[str, Any]) -> LedgerApp:
    return LedgerApp(f"sqlite:///{path / 'ledger.db'}", clock=clock, snapshot_every=25, **keys)


def balances(lic: Licence) -> dict[str, Any]:
    return dict(lic.hours_balances or {})


def projected(status: Status | None) -> dict[str, Any]:
    assert status is not None
    return {b.agent_class: b for b in status.hours}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(master_operations(USERS, CLASSES), min_size=15, max_size=50),
       top_up_at=st.integers(min_value=0, max_value=50))
def test_hours_in_the_view_always_equal_the_ledgers(ops: list[tuple[Any, ...]],
                                                    top_up_at: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clock = ManualClock(T0)
        keys = {"key": os.urandom(32), "signing_key": Ed25519PrivateKey.generate()}
        app = open_app(Path(tmp), clock, keys)
        app.start_trial()
        install(app, 1, {"PRED": 1, "PBX": 2}, T0)
        app.enrol_site("north", local_limits={"PRED": 3})
        app.enrol_site("south")
        runner = ProjectionRunner(app, batch_size=7)
        seq = dict.fromkeys(SITES, 0)
        try:
            for i, op in enumerate(ops):
                if i == top_up_at and app.licence.licensed:
                    install(app, 2, {"PRED": 1, "ACD": 1}, clock.now())
                apply(app, clock, op, seq)
                runner.run_once()
                expected = balances(app.licence)
                assert projected(runner.status()) == expected, op
                with runner.connect() as conn:
                    assert projected(read_status(conn)) == expected, op
            with ProjectionRunner(app) as fresh:
                assert projected(fresh.status()) == balances(app.licence)
            live = app.licence
            rebuilt = app.replay()
            assert rebuilt is not None and balances(rebuilt) == balances(live)
            assert rebuilt.sites == live.sites
            app.take_snapshot()
        finally:
            runner.close()
            app.close()
        reopened = open_app(Path(tmp), clock, keys)
        try:
            assert balances(reopened.licence) == balances(live)
            assert reopened.licence.next_due() == live.next_due()
        finally:
            reopened.close()


@pytest.fixture
def hours_day(tmp_path: Path) -> Any:
    """PRED with 100 agent-hours; 10 PRED seats at north from 08:00; north drops at 12:00
    and is cut off at 12:15, its seats still counted (and burning)."""
    clock = ManualClock(T0)
    app = LedgerApp(f"sqlite:///{tmp_path / 'ledger.db'}", clock=clock, key=os.urandom(32),
                    signing_key=Ed25519PrivateKey.generate())
    app.start_trial()
    install(app, 1, {"PRED": 100}, T0)
    app.enrol_site("north")
    app.enrol_site("south")
    app.execute([ConnectSite("north"), ConnectSite("south")])
    app.execute([AcquireSeat("north", f"u{i}", "PRED", "t", "c") for i in range(2)])
    clock.set(T0 + timedelta(hours=4))
    app.execute([DisconnectSite("north")])
    clock.set(T0 + timedelta(hours=4, minutes=15))
    app.execute([Tick()])
    yield app, clock
    app.close()


def test_status_and_usage_show_hours_used_and_left(hours_day: Any) -> None:
    app, clock = hours_day
    with ProjectionRunner(app) as runner:
        runner.run_once()
        status = runner.status()
        assert status is not None
        (pred,) = status.hours
        at = T0 + timedelta(hours=10)  # 2 seats for 10 hours: 20 used, 80 left
        assert pred.left_at(at) == 80 * US_PER_HOUR
        text = render_status_table(status, at)
        assert "PRED   20.00  80.00       100              2" in text
        assert "held by cut-off sites" in text and "north: 2 seat(s) (PRED=2)" in text
        report = runner.usage(T0, T0 + timedelta(days=1), by="class", as_of=at)
        assert report.hours_at() == [("PRED", 20.0, 80.0)]
        assert "PRED     100.00   100.00  20.00             0.00  80.00" in usage_table(report)


def test_the_timer_sends_the_hours_notices_with_no_traffic(hours_day: Any) -> None:
    app, clock = hours_day
    seen = []
    until = T0 + timedelta(hours=60)
    while (due := app.licence.next_due()) is not None and due <= until:
        clock.set(max(due, clock.now()))
        seen += [n.detail for n in app.execute([Tick()])[0]  # type: ignore[union-attr]
                 if n.pool == "PRED"]
    assert len(seen) == 4 and "used up" in seen[-1]
    exhausted = [e for _, e in app.events() if type(e).__name__ == "HoursExhausted"]
    assert [e.occurred_at for e in exhausted] == [T0 + timedelta(hours=50)]
