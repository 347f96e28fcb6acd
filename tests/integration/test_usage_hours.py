"""Hours licences in the usage statement: per class licensed by hours, the agent-hours
granted, used, charged for offline use and left, derived from the log by the usage view.

The scripted day is small enough to compute by hand (the timeline is next to each
number); a property test checks the view against the ledger's own balances over random
traffic, across a resumed runner and a rebuild.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import (
    AcquireSeat,
    ConnectSite,
    DisconnectSite,
    HeldSeat,
    LedgerApp,
    ManualClock,
    OfflineEvent,
    ReleaseSeat,
    SyncSite,
    Tick,
)
from ledger.domain.hours import US_PER_HOUR
from ledger.domain.values import SiteState
from projections import ProjectionRunner, UsageReport, render_html_report
from projections.render import HOURS_COLUMNS, usage_csv, usage_json, usage_table
from seatledger.cli.main import main
from seatledger.config.settings import load_config
from seatledger.config.store import open_ledger
from seatledger.services.datadir import init_data_dir
from tests.integration.test_hours_projection import install
from tests.integration.test_projections_contract import DAY, at, make_app, scripted_day
from tests.integration.test_projections_live_status import apply
from tests.strategies import SITES, master_operations, sampled_users


@pytest.fixture
def hours_day(store_url: str) -> Iterator[tuple[LedgerApp, ManualClock, ProjectionRunner]]:
    """2026-03-02 (UTC), a vendor licence giving PRED 10 agent-hours (and a limit of 2):

    08:00  licence installed; north: u0, u1 log on (PRED)          2 seats
    09:00  north drops; 09:15 a tick cuts it off: its seats stay counted
    11:00  2 seats x 3 h: 6 used, 4 left; a second licence adds 5 h: 9 left of 15
    12:00  south: u2 logs on                                       3 seats; 7 left
    13:00  4 left; south syncs: u3 held offline since 08:00, charged 5 h: 1 overdrawn
    14:00  4 seats x 1 h more: 20 used in all, 5 overdrawn

    The runner is left at 11:00, before the second licence (run it again to see the rest).
    """
    clock = ManualClock(at("08:00"))
    app = make_app(store_url, clock)
    app.start_trial()
    install(app, 1, {"PRED": 10}, at("08:00"))
    app.enrol_site("north")
    app.enrol_site("south")
    app.execute([ConnectSite("north"), ConnectSite("south")])
    app.execute([AcquireSeat("north", f"u{i}", "PRED", "t", "c") for i in range(2)])
    clock.set(at("09:00"))
    app.execute([DisconnectSite("north")])
    clock.set(at("09:15"))
    app.execute([Tick()])
    clock.set(at("11:00"))
    runner = ProjectionRunner(app)
    runner.run_once()
    install(app, 2, {"PRED": 5}, at("11:00"))
    clock.set(at("12:00"))
    app.execute([AcquireSeat("south", "u2", "PRED", "t", "c")])
    clock.set(at("13:00"))
    app.execute([SyncSite("south", (OfflineEvent(1, "grant", "u3", "PRED", at("08:00")),),
                          (HeldSeat("u2", "PRED"), HeldSeat("u3", "PRED")))])
    clock.set(at("14:00"))
    try:
        yield app, clock, runner
    finally:
        runner.close()
        app.close()


def hours_of(report: UsageReport) -> dict[str, tuple[float, ...]]:
    """Per row key: (licensed, granted, used, charged, left, overdrawn) of the row's hours."""
    return {f"{r.period:%H}": (h.licensed_hours, h.granted_hours, h.used_hours,
                               h.charged_hours, h.left_hours, h.overdrawn_hours)
            for r in report.rows if (h := r.hours) is not None}


def licence_lines(text: str) -> list[list[str]]:
    """The table output's hours licences (licensed, granted, used, charged offline, left,
    overdrawn if any), a list of words per class."""
    lines = text.split("hours licences, this statement")[1].splitlines()
    return [line.split() for line in lines[3:]]


def test_hours_used_and_left_match_the_hand_computed_day(hours_day: Any) -> None:
    app, clock, runner = hours_day
    # Up to 11:00, before the second licence: 2 seats for 3 hours.
    early = runner.usage(at("08:00"), at("11:00"), by="class", period="hour",
                         as_of=at("11:00"))
    assert hours_of(early) == {"08": (10, 10, 2, 0, 8, 0), "09": (10, 0, 2, 0, 6, 0),
                               "10": (10, 0, 2, 0, 4, 0)}
    assert early.hours_at() == [("PRED", 6.0, 4.0)]

    runner.run_once()
    hourly = runner.usage(DAY, DAY + timedelta(days=1), by="class", period="hour",
                          as_of=clock.now())
    assert hours_of(hourly) == {
        "08": (10, 10, 2, 0, 8, 0), "09": (10, 0, 2, 0, 6, 0), "10": (10, 0, 2, 0, 4, 0),
        "11": (15, 5, 2, 0, 7, 0),   # + 5 h at 11:00, the cut-off site's 2 seats burning
        "12": (15, 0, 3, 0, 4, 0),   # south's u2 too
        "13": (15, 0, 9, 5, -5, 5),  # 5 h charged at 13:00, then 4 seats for an hour
    }
    # The cut-off site's seats were counted all along, as the ledger counts them.
    status = runner.status()
    assert status is not None
    assert {s.site: s.status for s in status.sites}["north"] == SiteState.CUT_OFF
    assert app.licence.hours_left("PRED", clock.now()) == -5 * US_PER_HOUR
    assert [type(e).__name__ for _, e in app.events()].count("HoursOverdrawn") == 1

    daily = runner.usage(DAY, DAY + timedelta(days=1), by="class", as_of=clock.now())
    (combined,) = [r for r in daily.rows if r.key == "PRED+ACD"]
    assert combined.hours is None  # hours are a class's, not a pool's

    rows = {r["class"]: r for r in csv.DictReader(io.StringIO(usage_csv(daily)))}
    assert [rows["PRED"][c] for c in HOURS_COLUMNS] == [
        "15.0000", "15.0000", "20.0000", "5.0000", "-5.0000", "5.0000"]
    assert [rows["PRED+ACD"][c] for c in HOURS_COLUMNS] == [""] * len(HOURS_COLUMNS)

    data = json.loads(usage_json(daily))
    expected = {"agent_class": "PRED", "licensed_hours": 15.0, "granted_hours": 15.0,
                "used_hours": 20.0, "charged_hours": 5.0, "left_hours": -5.0,
                "overdrawn_hours": 5.0}
    assert data["hours"] == [expected]
    (pred_row,) = [r for r in data["rows"] if r["key"] == "PRED"]
    assert pred_row["hours"] == expected

    assert licence_lines(usage_table(daily)) == [
        ["PRED", "15.00", "15.00", "20.00", "5.00", "0.00", "5.00"]]

    with runner.connect() as conn:
        page = render_html_report(conn, DAY, DAY + timedelta(days=1), as_of=clock.now())
    assert "<h2>Agent-hours" in page
    assert ("<td>2026-03-02</td><td>PRED</td><td class=n>15.00</td><td class=n>15.00</td>"
            "<td class=n>20.00</td><td class=n>5.00</td><td class=n>0.00</td>"
            "<td class=n>5.00</td>") in page


def test_a_period_with_hours_granted_and_no_seats_gets_a_row(tmp_path: Path) -> None:
    """08:00 PRED 10 h installed, no seat ever: the 08:00 hour has a row for the grant; the
    quiet hours after it have none."""
    clock = ManualClock(at("08:00"))
    app = make_app(f"sqlite:///{tmp_path / 'ledger.db'}", clock)
    app.start_trial()
    install(app, 1, {"PRED": 10}, at("08:00"))
    clock.set(at("11:30"))
    app.execute([Tick()])
    try:
        with ProjectionRunner(app) as runner:
            runner.run_once()
            report = runner.usage(DAY, DAY + timedelta(days=1), by="class", period="hour")
    finally:
        app.close()
    (row,) = report.rows
    assert (row.key, row.agent_hours, row.grants) == ("PRED", 0.0, 0)
    assert hours_of(report) == {"08": (10, 10, 0, 0, 10, 0)}
    assert report.hours_at() == [("PRED", 0.0, 10.0)]


def test_a_store_without_hours_licences_reports_no_hours(tmp_path: Path) -> None:
    clock = ManualClock(at("06:00"))
    app = make_app(f"sqlite:///{tmp_path / 'ledger.db'}", clock)
    scripted_day(app, clock)
    try:
        with ProjectionRunner(app) as runner:
            runner.run_once()
            report = runner.usage(DAY, DAY + timedelta(days=1), by="class")
            with runner.connect() as conn:
                page = render_html_report(conn, DAY, DAY + timedelta(days=1))
    finally:
        app.close()
    assert report.rows and report.hours == ()
    assert all(r.hours is None for r in report.rows)
    text = usage_csv(report)
    # The hours come after every column the statement had before them.
    assert text.split("\n")[0].split(",") == [
        "period_start", "class", "agent_class", "agent_hours", "peak", "peak_at", "limit",
        "over_limit_minutes", "excess_agent_hours", "overuse_agent_hours", "grants",
        "overuse_grants", "offline_grants", "refused", "refused_limit_enforced",
        "refused_overuse_ceiling", "refused_site_limit", "refused_licence_expired",
        "refused_class_not_licensed", "refused_unknown_site", "refused_site_revoked",
        "refused_hours_exhausted", "hours_licensed", "hours_granted", "hours_used",
        "hours_charged", "hours_left", "hours_overdrawn"]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(report.rows)
    assert {r[c] for r in rows for c in HOURS_COLUMNS} == {""}
    data = json.loads(usage_json(report))
    assert data["hours"] == [] and {r["hours"] for r in data["rows"]} == {None}
    assert "hours" not in usage_table(report).split("\n")[1]
    assert "Agent-hours" not in page


def test_report_usage_shows_the_hours_in_every_format(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """PRED 10 h; 2 seats from 08:00 to 11:00: 6 used, 4 left, whenever the report ends."""
    root = tmp_path / "data"
    init_data_dir(root, history=False)
    clock = ManualClock(at("08:00"))
    with open_ledger(load_config(root), clock=clock) as app:
        app.start_trial()
        install(app, 1, {"PRED": 10}, at("08:00"))
        app.enrol_site("north")
        app.execute([ConnectSite("north")])
        app.execute([AcquireSeat("north", f"u{i}", "PRED", "t", "c") for i in range(2)])
        clock.set(at("11:00"))
        app.execute([ReleaseSeat("north", f"u{i}") for i in range(2)])
    day = ("--data-dir", str(root), "report", "usage", "--from", "2026-03-02", "--to",
           "2026-03-02")

    def run(*argv: str) -> str:
        assert main([*day, *argv]) == 0
        return capsys.readouterr().out

    by_class = {r["class"]: r for r in csv.DictReader(io.StringIO(run("--by", "class",
                                                                      "--format", "csv")))}
    assert [by_class["PRED"][c] for c in HOURS_COLUMNS] == [
        "10.0000", "10.0000", "6.0000", "0.0000", "4.0000", "0.0000"]
    (by_site,) = csv.DictReader(io.StringIO(run("--format", "csv")))
    assert [by_site[c] for c in HOURS_COLUMNS] == [""] * len(HOURS_COLUMNS)
    data = json.loads(run("--format", "json"))
    assert [(h["agent_class"], h["used_hours"], h["left_hours"]) for h in data["hours"]] == [
        ("PRED", 6.0, 4.0)]
    assert licence_lines(run()) == [["PRED", "10.00", "10.00", "6.00", "0.00", "4.00"]]
    page = tmp_path / "usage.html"
    run("--format", "html", "--output", str(page))
    assert ("<td>PRED</td><td class=n>10.00</td><td class=n>10.00</td><td class=n>6.00</td>"
            "<td class=n>0.00</td><td class=n>4.00</td><td class=n>0.00</td>") in page.read_text()


USERS = sampled_users(4)
CLASSES = ("PRED", "PRED", "ACD", "PBX")
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def summary(runner: ProjectionRunner, now: datetime) -> dict[str, tuple[int, int]]:
    """Per class licensed by hours: (licensed, left) in seat-microseconds, from the view."""
    report = runner.usage(T0, now + timedelta(hours=1), by="site", as_of=now)
    return {h.agent_class: (round(h.licensed_hours * US_PER_HOUR),
                            round(h.left_hours * US_PER_HOUR)) for h in report.hours}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(master_operations(USERS, CLASSES), min_size=15, max_size=45),
       top_up_at=st.integers(min_value=0, max_value=45),
       reopen_at=st.integers(min_value=0, max_value=45))
def test_the_views_hours_always_equal_the_ledgers(ops: list[tuple[Any, ...]], top_up_at: int,
                                                  reopen_at: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clock = ManualClock(T0)
        app = LedgerApp(f"sqlite:///{Path(tmp) / 'ledger.db'}", clock=clock,
                        key=os.urandom(32), signing_key=Ed25519PrivateKey.generate())
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
                if i == reopen_at:  # a new runner resumes from the tables
                    runner.close()
                    runner = ProjectionRunner(app, batch_size=7)
                apply(app, clock, op, seq)
                runner.run_once()
                now = clock.now()
                balances = app.licence.hours_balances or {}
                assert summary(runner, now) == {
                    c: (b.added_us, b.left_at(now)) for c, b in balances.items()}, op
            now = clock.now()
            charged = sum(e.charge_us for _, e in app.events()
                          if type(e).__name__ == "HoursCharged")
            before = runner.usage(T0, now + timedelta(hours=1), by="class", as_of=now)
            spent = sum(h.charged_hours for h in before.hours)
            assert round(spent * US_PER_HOUR) == charged
            # The periods add up to the whole, and the last one ends where the whole does.
            for h in before.hours:
                mine = [r.hours for r in before.rows if r.hours is not None
                        and r.key == h.agent_class]
                assert sum(m.granted_hours for m in mine) == pytest.approx(h.granted_hours)
                assert sum(m.used_hours for m in mine) == pytest.approx(h.used_hours)
                assert mine[-1].left_hours == h.left_hours
            runner.rebuild(["usage"])
            assert runner.usage(T0, now + timedelta(hours=1), by="class", as_of=now) == before
        finally:
            runner.close()
            app.close()
