"""Recorded time while a master runs: it follows a monotonic clock, so setting the wall clock
back records ClockStepped (with both readings) and never extends a grace window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import trio

from ledger import AcquireSeat, ConnectSite, ManualClock
from seatledger.bootstrap import build_master, master_settings
from seatledger.config.bundle import Bundle
from seatledger.config.store import open_ledger
from seatledger.services.datadir import init_data_dir
from seatledger.services.sites import enrol_site
from seatledger.slave.connector import SlaveConnector, SlaveSettings

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


async def test_a_wall_clock_step_back_is_recorded_and_does_not_extend_grace(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    config = init_data_dir(tmp_path / "data", history=False)
    app = open_ledger(config, clock=ManualClock(START))
    app.issue_licence(customer="Acme", limits={"PRED": 100})
    enrol_site(config, app, "north", output=tmp_path / "north.bundle")
    origin = trio.current_time()
    offset = timedelta(0)

    def wall() -> datetime:
        return START + timedelta(seconds=trio.current_time() - origin) + offset

    master = build_master(config, app=app, now=wall,
                          settings=master_settings(config, worker_thread=False,
                                                   refresh_interval=3600))
    async with trio.open_nursery() as nursery:
        await nursery.start(master.run, "127.0.0.1", 0)
        await master.submit(ConnectSite("north"))
        for i in range(101):  # the 101st opens the grace window
            await master.submit(AcquireSeat("north", f"u{i}", "PRED"))
        opened = app.licence.pools["PRED"].deadline
        assert opened is not None
        await trio.sleep(3600)
        offset = -timedelta(hours=10)  # someone sets the master's clock back ten hours
        before_step = app.now()
        await master.submit(AcquireSeat("north", "late", "PRED"))
        await trio.sleep(48 * 3600)  # the deadline passes on recorded time
        pool = app.licence.pools["PRED"]
        assert pool.state == "spent" and pool.enforced
        refused = await master.submit(AcquireSeat("north", "after", "PRED"))
        assert getattr(refused, "reason", None) == "limit_enforced"
        master.stop()
    events = [e for _, e in app.events()]
    steps = [e for e in events if type(e).__name__ == "ClockStepped"]
    assert len(steps) == 1
    step = steps[0]
    # Both readings: the wall clock as set, and what it should have read.
    assert abs(step.wall_clock - (before_step - timedelta(hours=10))) < timedelta(seconds=5)
    assert abs(step.recorded - before_step) < timedelta(seconds=5)
    expired = [e for e in events if type(e).__name__ == "GraceExpired"]
    assert len(expired) == 1
    # The window closed when it was due on recorded time, not ten hours later.
    assert abs(expired[0].timestamp - opened) < timedelta(seconds=2)
    app.close()


async def test_a_master_started_with_its_clock_behind_continues_and_tells_every_site(
        tmp_path: Path) -> None:
    config = init_data_dir(tmp_path / "data", history=False)
    app = open_ledger(config, clock=ManualClock(START))
    app.issue_licence(customer="Acme", limits={"PRED": 100})
    bundle = Bundle.read(enrol_site(config, app, "north", output=tmp_path / "north.bundle"))
    last_recorded = app.licence.modified_on
    origin = trio.current_time()

    def wall() -> datetime:  # ten hours behind what the ledger last recorded
        return START - timedelta(hours=10) + timedelta(seconds=trio.current_time() - origin)

    master = build_master(config, app=app, now=wall,
                          settings=master_settings(config, worker_thread=False,
                                                   refresh_interval=3600))
    alerts: list[tuple[str, str]] = []
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(master.run, "127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]
        site = Bundle(bundle.site, bundle.ca_pem, bundle.cert_pem, bundle.key_pem,
                      f"127.0.0.1:{port}")
        async with SlaveConnector(site, tmp_path / "north", settings=SlaveSettings()) as north:
            north.on_alert = lambda a: alerts.append((str(a.severity), a.text))
            with trio.fail_after(15):
                await north.wait_online()
            seat = await north.acquire("alice", "PRED")
            assert seat.status == "normal"
            with trio.fail_after(10):
                while not alerts:
                    await trio.sleep(0.05)
        master.stop()
    steps = [e for _, e in app.events() if type(e).__name__ == "ClockStepped"]
    assert len(steps) == 1 and steps[0].wall_clock < last_recorded - timedelta(hours=9)
    assert all(e.timestamp >= last_recorded for _, e in app.events())  # time went on
    assert any(severity == "critical" and "clock was set back" in text
               for severity, text in alerts), alerts
    app.close()
