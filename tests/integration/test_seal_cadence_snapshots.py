"""Snapshots taken when the ledger is idle, not while a command waits for one."""

from __future__ import annotations

from collections.abc import Callable

from ledger import AcquireSeat, LedgerApp, ManualClock

Open = Callable[..., LedgerApp]


def snapshot_versions(app: LedgerApp) -> list[int]:
    assert app._app.snapshots is not None
    return [s.originator_version for s in app._app.snapshots.get(app.licence.id)]


def test_a_due_snapshot_waits_for_an_idle_tick(open_ledger: Open, clock: ManualClock) -> None:
    app = open_ledger(snapshot_every=20, snapshot_when_idle=True)
    app.issue_licence(customer="Acme", limits={"PRED": 100})
    app.enrol_site("north")
    for i in range(25):
        app.execute([AcquireSeat("north", f"u{i}", "PRED")])
    assert snapshot_versions(app) == []  # due, but every command was waited for
    app.tick()  # nothing is due: the ledger is idle
    assert snapshot_versions(app) == [app.licence.version]


def test_a_busy_ledger_still_snapshots_at_twice_the_interval(
        open_ledger: Open, clock: ManualClock) -> None:
    app = open_ledger(snapshot_every=20, snapshot_when_idle=True)
    app.issue_licence(customer="Acme", limits={"PRED": 100})
    for i in range(45):
        app.enrol_site(f"s{i}")
    assert len(snapshot_versions(app)) == 1
    state = app.licence.sites
    app.close()
    assert open_ledger().licence.sites == state
