"""The read models against a real store: one contract, run on SQLite and on PostgreSQL.

The scripted day below is small enough to compute by hand; the expected numbers in the
tests are that computation (the timeline is repeated next to each number).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from ledger import AcquireSeat, LedgerApp, ManualClock, ReleaseSeat, Tick
from projections import (
    ConcurrentRunnerError,
    ProjectionRunner,
    UnknownProjectionError,
    read_status,
)
from projections.schema import METADATA, tracking, usage_hours

DAY = datetime(2026, 3, 2, tzinfo=UTC)


def at(hhmm: str, day: datetime = DAY) -> datetime:
    hours, minutes = map(int, hhmm.split(":"))
    return day + timedelta(hours=hours, minutes=minutes)


def make_app(url: str, clock: ManualClock) -> LedgerApp:
    return LedgerApp(url, key=os.urandom(32), signing_key=Ed25519PrivateKey.generate(),
                     clock=clock)


def scripted_day(app: LedgerApp, clock: ManualClock,
                 after_each: Any = None) -> None:
    """One Monday, 2026-03-02 (UTC), on a licence PRED=100, ACD=20, PRED+ACD capped at 115.

    06:00  licence issued; sites north (local PRED limit 80) and south enrolled
    08:00  north: 60 PRED log on (acme/sales)                  PRED 60
    08:30  south: 30 PRED log on (globex/support)              PRED 90
    09:00  south: 10 ACD log on (globex/care)                  ACD 10, PRED+ACD 100
    09:15  north: 25 PRED ask; 20 granted, 5 refused (site_limit: north is at 80)
           PRED 110 > 100 and PRED+ACD 120 > 115: both grace windows open
    10:00  south: 15 PRED log off                              PRED 95, PRED+ACD 105
    12:00  north: 40 PRED log off                              PRED 55
    13:00  south: 2 VIR ask, refused (class_not_licensed)
    14:00  south: 12 more ACD                                  ACD 22 > 20: ACD grace opens
    16:00  south: all 22 ACD log off                           ACD 0
    17:00  everybody else logs off                             PRED 0
    18:00  a tick (nothing due)
    """
    def run(commands: list[Any]) -> None:
        app.execute(commands)
        if after_each is not None:
            after_each()

    def acquire(site: str, users: list[str], cls: str, tenant: str, campaign: str) -> None:
        run([AcquireSeat(site, u, cls, tenant, campaign) for u in users])

    def release(site: str, users: list[str]) -> None:
        run([ReleaseSeat(site, u) for u in users])

    clock.set(at("06:00"))
    app.issue_licence(customer="Northwind", limits={"PRED": 100, "ACD": 20}, total_pred_acd=115)
    app.enrol_site("north", local_limits={"PRED": 80})
    app.enrol_site("south")
    n = [f"n{i:02d}" for i in range(85)]
    s = [f"s{i:02d}" for i in range(30)]
    a = [f"a{i:02d}" for i in range(22)]
    clock.set(at("08:00"))
    acquire("north", n[:60], "PRED", "acme", "sales")
    clock.set(at("08:30"))
    acquire("south", s, "PRED", "globex", "support")
    clock.set(at("09:00"))
    acquire("south", a[:10], "ACD", "globex", "care")
    clock.set(at("09:15"))
    acquire("north", n[60:85], "PRED", "acme", "sales")
    clock.set(at("10:00"))
    release("south", s[:15])
    clock.set(at("12:00"))
    release("north", n[:40])
    clock.set(at("13:00"))
    acquire("south", ["v0", "v1"], "VIR", "globex", "support")
    clock.set(at("14:00"))
    acquire("south", a[10:], "ACD", "globex", "care")
    clock.set(at("16:00"))
    release("south", a)
    clock.set(at("17:00"))
    release("north", n[40:80])
    release("south", s[15:])
    clock.set(at("18:00"))
    run([Tick()])


def dump(runner: ProjectionRunner) -> dict[str, list[tuple[Any, ...]]]:
    """Every view table's rows, in key order (the tracking table included)."""
    with runner.connect() as conn:
        return {t.name: [tuple(r) for r in conn.execute(
                    select(t).order_by(*t.primary_key.columns))]
                for t in METADATA.sorted_tables}


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A fresh, empty store: an SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    return str(request.getfixturevalue("pg_url"))


class ProjectionContract:
    """What every store must give the read models. Subclassed once, run per backend."""

    @pytest.fixture
    def day(self, store_url: str) -> Iterator[tuple[LedgerApp, ManualClock]]:
        clock = ManualClock(at("06:00"))
        app = make_app(store_url, clock)
        scripted_day(app, clock)
        yield app, clock
        app.close()

    @pytest.fixture
    def runner(self, day: tuple[LedgerApp, ManualClock]) -> Iterator[ProjectionRunner]:
        app, _ = day
        runner = ProjectionRunner(app, batch_size=50)
        runner.run_once()
        yield runner
        runner.close()

    # ---------------------------------------------------------------- usage, by hand
    def test_usage_by_class_matches_the_hand_computed_day(self, runner: ProjectionRunner) -> None:
        report = runner.usage(DAY, DAY + timedelta(days=1), by="class")
        rows = {r.key: r for r in report.rows}
        assert set(rows) == {"PRED", "ACD", "PRED+ACD", "VIR"}
        pred = rows["PRED"]
        # 60 x 0.5h + 90 x 0.75h + 110 x 0.75h + 95 x 2h + 55 x 5h
        assert pred.agent_hours == pytest.approx(645.0)
        assert (pred.peak, pred.peak_at) == (110, at("09:15"))
        assert pred.over_limit_minutes == pytest.approx(45.0)  # 09:15 to 10:00 above 100
        assert pred.excess_agent_hours == pytest.approx(7.5)  # 10 seats over for 0.75h
        assert (pred.grants, pred.overuse_grants, pred.limit) == (110, 10, 100)
        assert pred.refusals == {"site_limit": 5}
        acd = rows["ACD"]
        assert acd.agent_hours == pytest.approx(94.0)  # 10 x 5h + 22 x 2h
        assert (acd.peak, acd.peak_at) == (22, at("14:00"))
        assert acd.over_limit_minutes == pytest.approx(120.0)  # 14:00 to 16:00
        assert acd.excess_agent_hours == pytest.approx(4.0)  # 2 seats over for 2h
        assert (acd.grants, acd.overuse_grants) == (22, 2)
        both = rows["PRED+ACD"]
        # 60x0.5 + 90x0.5 + 100x0.25 + 120x0.75 + 105x2 + 65x2 + 77x2 + 55x1
        assert both.agent_hours == pytest.approx(739.0)
        assert (both.peak, both.peak_at, both.limit) == (120, at("09:15"), 115)
        assert both.over_limit_minutes == pytest.approx(45.0)  # 09:15 to 10:00 above 115
        assert both.excess_agent_hours == pytest.approx(3.75)  # 5 over for 0.75h
        vir = rows["VIR"]
        assert (vir.agent_hours, vir.peak, vir.grants, vir.limit) == (0, 0, 0, None)
        assert vir.refusals == {"class_not_licensed": 2}

    def test_usage_by_site_splits_by_class(self, runner: ProjectionRunner) -> None:
        report = runner.usage(DAY, DAY + timedelta(days=1), by="site")
        rows = {(r.key, r.agent_class): r for r in report.rows}
        north = rows[("north", "PRED")]
        assert north.agent_hours == pytest.approx(495.0)  # 60x1.25 + 80x2.75 + 40x5
        assert (north.peak, north.peak_at, north.grants) == (80, at("09:15"), 80)
        # n70..n79 were granted over the limit and held 09:15 to 17:00
        assert north.overuse_agent_hours == pytest.approx(77.5)
        assert north.refusals == {"site_limit": 5}
        assert north.over_limit_minutes is None and north.excess_agent_hours is None
        south = rows[("south", "PRED")]
        assert south.agent_hours == pytest.approx(150.0)  # 30 x 1.5h + 15 x 7h
        assert (south.peak, south.peak_at) == (30, at("08:30"))
        south_acd = rows[("south", "ACD")]
        assert (south_acd.agent_hours, south_acd.peak) == (pytest.approx(94.0), 22)
        assert south_acd.overuse_agent_hours == pytest.approx(4.0)  # a20, a21 for 2h
        assert rows[("south", "VIR")].refusals == {"class_not_licensed": 2}

    def test_usage_by_tenant_and_campaign(self, runner: ProjectionRunner) -> None:
        tenants = {(r.key, r.agent_class): r
                   for r in runner.usage(DAY, DAY + timedelta(days=1), by="tenant").rows}
        assert tenants[("acme", "PRED")].agent_hours == pytest.approx(495.0)
        assert tenants[("globex", "PRED")].agent_hours == pytest.approx(150.0)
        assert tenants[("globex", "ACD")].agent_hours == pytest.approx(94.0)
        campaigns = {(r.key, r.agent_class): r
                     for r in runner.usage(DAY, DAY + timedelta(days=1), by="campaign").rows}
        assert campaigns[("care", "ACD")].peak == 22
        assert campaigns[("support", "VIR")].refusals == {"class_not_licensed": 2}

    def test_hourly_rows_carry_the_seats_held_into_each_hour(self, runner: ProjectionRunner) -> None:
        hours = {r.period.hour: r for r in runner.usage(
            DAY, DAY + timedelta(days=1), by="class", period="hour").rows if r.key == "PRED"}
        assert hours[8].agent_hours == pytest.approx(60 * 0.5 + 90 * 0.5)
        assert (hours[8].peak, hours[8].peak_at) == (90, at("08:30"))
        assert hours[9].over_limit_minutes == pytest.approx(45.0)
        # nothing happens between 10:00 and 12:00: hour 11 is 95 seats all along
        assert (hours[11].agent_hours, hours[11].peak, hours[11].peak_at) == (
            pytest.approx(95.0), 95, at("11:00"))
        # An instant counts with every event recorded at it: the 110 carried into 10:00 were
        # 95 at 10:00 itself, and 12:00 is after the 40 log-offs.
        assert (hours[10].peak, hours[10].peak_at) == (95, at("10:00"))
        assert (hours[12].peak, hours[12].peak_at) == (55, at("12:00"))
        assert 17 not in hours and 18 not in hours  # all gone at 17:00 itself

    def test_seats_still_held_are_counted_up_to_as_of(self, store_url: str) -> None:
        clock = ManualClock(at("06:00"))
        with make_app(store_url, clock) as app:
            app.issue_licence(customer="c", limits={"PRED": 100})
            app.enrol_site("north")
            clock.set(at("08:00"))
            app.execute([AcquireSeat("north", f"u{i}", "PRED") for i in range(10)])
            with ProjectionRunner(app) as runner:
                runner.run_once()
                report = runner.usage(DAY, DAY + timedelta(days=1), by="class",
                                      as_of=at("20:00"))
                (row,) = [r for r in report.rows if r.key == "PRED"]
                assert row.agent_hours == pytest.approx(120.0)  # 10 seats, 08:00 to 20:00
                by_hour = runner.usage(DAY, DAY + timedelta(days=1), by="class",
                                       period="hour", as_of=at("20:00"))
                assert [r.period.hour for r in by_hour.rows if r.key == "PRED"] == list(range(8, 20))

    # ---------------------------------------------------------------- live status
    def test_live_status_agrees_with_the_ledger(self, day: tuple[LedgerApp, ManualClock],
                                                runner: ProjectionRunner) -> None:
        app, _ = day
        status = runner.status()
        assert status is not None
        lic = app.licence
        assert {p.pool: (p.in_use, p.limit, p.state, p.deadline, p.overuse, p.enforced)
                for p in status.pools} == {
            n: (p.in_use, p.limit, p.state, p.deadline, p.overuse, p.enforced)
            for n, p in lic.pools.items()}
        assert status.pools[0].pool == "PRED"
        assert status.pools[0].deadline == at("09:15") + timedelta(hours=48)
        with runner.connect() as conn:
            assert read_status(conn) == status
        assert status.last_event_at == at("17:00")  # the 18:00 tick had nothing to record

    # ---------------------------------------------------------------- point in time
    def test_seats_held_at_an_instant(self, runner: ProjectionRunner) -> None:
        state = runner.state_at(at("09:30"))
        assert len(state.seats) == 120
        pools = {p.pool: p for p in state.pools}
        assert (pools["PRED"].in_use, pools["PRED"].grace) == (110, "open")
        assert (pools["ACD"].in_use, pools["ACD"].grace) == (10, "available")
        assert (pools["PRED+ACD"].in_use, pools["PRED+ACD"].limit) == (120, 115)
        south = runner.state_at(at("09:30"), site="south")
        assert {s.site for s in south.seats} == {"south"} and len(south.seats) == 40
        # releases at 10:00 have happened "at" 10:00
        assert {p.pool: p.in_use for p in runner.state_at(at("10:00")).pools}["PRED"] == 95
        assert runner.state_at(at("07:00")).seats == ()

    def test_a_users_history_with_reasons(self, runner: ProjectionRunner) -> None:
        history = runner.history("s00")
        assert [(e.kind, e.at, e.reason) for e in history] == [
            ("granted", at("08:30"), "within_limit"), ("released", at("10:00"), "logoff")]
        assert [(e.kind, e.reason) for e in runner.history("n72")] == [
            ("granted", "overuse"), ("released", "logoff")]
        refused = runner.history("n80")
        assert [(e.kind, e.at, e.reason) for e in refused] == [
            ("refused", at("09:15"), "site_limit")]
        assert runner.history("nobody") == ()

    def test_why_a_request_was_refused(self, runner: ProjectionRunner) -> None:
        (answer,) = runner.why_refused("n80")
        assert answer.reason == "site_limit"
        assert "local limit" in answer.explanation
        # the state the ledger decided on: after the 20 grants before it in the batch
        pred = {p.pool: p for p in answer.pools}["PRED"]
        assert (pred.in_use, pred.grace) == (110, "open")
        (vir,) = runner.why_refused("v0", at=at("13:30"))
        assert vir.reason == "class_not_licensed"
        assert runner.why_refused("v0", at=at("12:00")) == ()

    def test_refusal_under_enforcement_tells_the_grace_story(self, store_url: str) -> None:
        clock = ManualClock(at("08:00"))
        with make_app(store_url, clock) as app:
            app.issue_licence(customer="c", limits={"PRED": 100})
            app.enrol_site("north")
            app.execute([AcquireSeat("north", f"u{i}", "PRED") for i in range(101)])
            clock.advance(hours=48)
            app.execute([Tick()])
            app.execute([AcquireSeat("north", "late", "PRED")])
            with ProjectionRunner(app) as runner:
                runner.run_once()
                (answer,) = runner.why_refused("late")
                assert answer.reason == "limit_enforced"
                assert "grace opened 2026-03-02 08:00Z, expired 2026-03-04 08:00Z" in answer.explanation
                (pred,) = answer.pools
                assert (pred.in_use, pred.limit, pred.grace, pred.enforced) == (101, 100, "spent", True)
                status = runner.status()
                assert status is not None and status.pools[0].enforced

    # ---------------------------------------------------------------- exactly once
    @pytest.mark.parametrize("stage", ["applied", "committed"])
    def test_a_crash_between_batches_counts_nothing_twice(
            self, day: tuple[LedgerApp, ManualClock], stage: str) -> None:
        app, _ = day
        with ProjectionRunner(app, batch_size=1000) as clean:
            clean.rebuild()
            expected = dump(clean)

        class Crash(Exception):
            pass

        def crash_at_third_batch(when: str, n: int) -> None:
            if (when, n) == (stage, 3):
                raise Crash

        with ProjectionRunner(app, batch_size=37, batch_hook=crash_at_third_batch) as crashing:
            with pytest.raises(Crash):
                crashing.rebuild()
            behind = crashing.positions()
            assert 0 < min(behind.values()) < app.max_id()
            # the same runner carries on (it reloads from the tables first) ...
            crashing.batch_hook = None
            crashing.run_once()
            assert dump(crashing) == expected
        # ... and so does a fresh one, after a crash in the middle of a second run
        with ProjectionRunner(app, batch_size=37, batch_hook=crash_at_third_batch) as again:
            with pytest.raises(Crash):
                again.rebuild()
        with ProjectionRunner(app, batch_size=41) as resumed:
            assert resumed.run_once() > 0
            assert dump(resumed) == expected
            assert resumed.run_once() == 0

    def test_rebuild_equals_incremental(self, store_url: str) -> None:
        clock = ManualClock(at("06:00"))
        with make_app(store_url, clock) as app:
            runner = ProjectionRunner(app)
            calls = []

            def follow() -> None:
                calls.append(runner.run_once())

            scripted_day(app, clock, after_each=follow)
            runner.run_once()
            assert sum(calls) > 0 and len(calls) > 10
            incremental = dump(runner)
            assert runner.rebuild() == app.max_id()
            assert dump(runner) == incremental
            runner.rebuild(["usage"])
            assert dump(runner) == incremental
            runner.close()

    def test_rebuilding_one_read_model_leaves_the_others_counted_once(
            self, runner: ProjectionRunner, day: tuple[LedgerApp, ManualClock]) -> None:
        app, clock = day
        clock.advance(hours=1)
        app.execute([AcquireSeat("north", "late", "PRED", "acme", "sales")])
        # point_in_time replays from zero while status and usage only take the new record
        assert runner.rebuild(["point_in_time"]) == app.max_id()
        assert set(runner.positions().values()) == {app.max_id()}
        with ProjectionRunner(app) as fresh:
            fresh.rebuild()
            assert dump(runner) == dump(fresh)

    def test_tables_of_another_shape_are_rebuilt_not_trusted(
            self, runner: ProjectionRunner, day: tuple[LedgerApp, ManualClock]) -> None:
        app, _ = day
        expected = dump(runner)
        with runner.engine.begin() as conn:
            conn.execute(tracking.update().where(tracking.c.name == "usage")
                         .values(schema="older-version"))
            conn.execute(usage_hours.delete())  # whatever an old version left is not reused
        with ProjectionRunner(app) as fresh:
            assert fresh.positions()["usage"] == 0
            fresh.run_once()
            assert dump(fresh) == expected

    def test_two_runners_never_apply_a_batch_twice(self, day: tuple[LedgerApp, ManualClock]) -> None:
        app, _ = day
        with ProjectionRunner(app) as first, ProjectionRunner(app) as second:
            first.positions()
            second.positions()  # both loaded at position 0
            first.run_once()
            with pytest.raises(ConcurrentRunnerError):
                second.run_once()
            assert second.run_once() == 0
            assert dump(second) == dump(first)

    def test_unknown_read_model_is_refused(self, day: tuple[LedgerApp, ManualClock]) -> None:
        app, _ = day
        with pytest.raises(UnknownProjectionError, match="choose from status, usage"):
            ProjectionRunner(app, names=["billing"])
        with ProjectionRunner(app, names=["status"]) as runner:
            with pytest.raises(UnknownProjectionError):
                runner.rebuild(["usage"])

    def test_follow_catches_up_after_a_nudge(self, day: tuple[LedgerApp, ManualClock]) -> None:
        import threading

        app, clock = day
        with ProjectionRunner(app) as runner:
            worker = threading.Thread(target=runner.follow, kwargs={"poll_seconds": 30})
            worker.start()
            try:
                for _ in range(200):
                    if runner.statistics()["positions"].get("status") == app.max_id():
                        break
                    threading.Event().wait(0.02)
                clock.advance(minutes=5)
                app.execute([AcquireSeat("south", "nudged", "PRED")])
                runner.nudge()
                for _ in range(200):
                    with runner.connect() as conn:
                        status = read_status(conn)
                    if status is not None and status.seats_in_use == 1:
                        break
                    threading.Event().wait(0.02)
                assert status is not None and status.seats_in_use == 1
            finally:
                runner.stop_following()
                worker.join(10)
            assert not worker.is_alive()


class TestProjections(ProjectionContract):
    """The contract, on every backend ``store_url`` gives."""
