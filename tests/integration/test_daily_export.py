"""The master daemon runs the audit export every day at the configured UTC time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import trio
import trio.testing

from exporters import generate_age_identity
from ledger import AcquireSeat, ManualClock, ReleaseSeat
from seatledger.bootstrap import export_schedule, master_context
from seatledger.config.settings import load_config
from seatledger.config.store import open_ledger
from seatledger.daemons.master import daily_exports
from seatledger.master.server import Master, MasterSettings, trio_now
from seatledger.services.datadir import init_data_dir

START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


async def test_master_exports_each_day_at_the_configured_time(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    root = tmp_path / "data"
    init_data_dir(root, history=False)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    vendor = generate_age_identity()
    with (root / "seatledger.toml").open("a") as f:
        f.write(f'\n[export]\nrecipients = ["{vendor.recipient}"]\ntime = "01:30"\n'
                f'\n[export.sink]\nkind = "folder"\npath = "{inbox}"\n')
    config = load_config(root)
    clock = ManualClock(START)
    app = open_ledger(config, clock=clock)
    app.issue_licence(customer="Acme", limits={"PRED": 100})
    app.enrol_site("north")
    master = Master(app, clock, master_context(config, app),
                    settings=MasterSettings(worker_thread=False, refresh_interval=3600), now=trio_now(START))
    async with trio.open_nursery() as nursery:
        await nursery.start(master.run, "127.0.0.1", 0)
        nursery.start_soon(daily_exports, master, export_schedule(config))
        for day in range(3):
            await master.submit(AcquireSeat("north", f"u{day}", "PRED"))
            await trio.sleep(3600)
            await master.submit(ReleaseSeat("north", f"u{day}"))
            await trio.sleep(23 * 3600)
        # Now Thu 05 Mar 06:00: the runs at 01:30 on Tue, Wed and Thu exported Mon, Tue, Wed.
        master.stop()
        await master.stopped.wait()
        nursery.cancel_scope.cancel()
    exported = [e for _, e in app.events() if type(e).__name__ == "AuditTrailExported"]
    assert [e.day for e in exported] == ["2026-03-02", "2026-03-03", "2026-03-04"]
    assert all(e.timestamp.strftime("%H:%M") == "01:30" for e in exported), [e.timestamp for e in exported]
    manifests = sorted(p.name for p in inbox.glob("*.manifest.json"))
    assert len(manifests) == 3 and "2026-03-04" in manifests[-1]
    app.close()
