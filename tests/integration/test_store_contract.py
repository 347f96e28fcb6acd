"""The event store's contract, run on the SQLite file and on the real PostgreSQL server."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta

import pytest

from ledger import (
    AcquireSeat,
    ConnectSite,
    Failure,
    Grant,
    HeldSeat,
    KeyFileError,
    LedgerApp,
    ManualClock,
    OfflineEvent,
    Refusal,
    ReleaseSeat,
    SyncSite,
    Tick,
)
from ledger.seal.seal import CHECKPOINT_TOPIC_SUFFIX

Open = Callable[..., LedgerApp]


def issued(open_ledger: Open, url: str, **kwargs: object) -> LedgerApp:
    app = open_ledger(url, **kwargs)
    app.issue_licence(customer="Acme", limits={"PRED": 100, "ACD": 20})
    app.enrol_site("north")
    app.enrol_site("south")
    return app


def test_state_survives_reopening(store_url: str, open_ledger: Open, clock: ManualClock) -> None:
    app = issued(open_ledger, store_url)
    app.execute([AcquireSeat("north", f"u{i}", "PRED", "t1", "c1") for i in range(105)])
    clock.advance(hours=3)
    app.execute([ReleaseSeat("north", "u0"), AcquireSeat("south", "a", "ACD")])
    pools, sites = app.licence.pools, app.licence.sites
    app.close()
    again = open_ledger(store_url)
    assert again.licence.pools == pools
    assert again.licence.sites == sites
    assert again.licence.pools["PRED"].state == "open"


def test_a_batch_commits_in_one_transaction_with_one_outcome_per_command(
        store_url: str, open_ledger: Open) -> None:
    app = issued(open_ledger, store_url)
    rows_before = len(app.recorder.read_seal()[0])
    outcomes = app.execute([
        AcquireSeat("north", "a", "PRED"),
        AcquireSeat("north", "a", "PRED"),
        AcquireSeat("nowhere", "b", "PRED"),
        ReleaseSeat("south", "ghost"),
        ReleaseSeat("north", "a"),
    ])
    assert isinstance(outcomes[0], Grant) and outcomes[1].repeated
    assert isinstance(outcomes[2], Refusal) and outcomes[2].reason == "unknown_site"
    assert isinstance(outcomes[3], Failure)
    assert len(app.recorder.read_seal()[0]) == rows_before + 1  # one commit, one seal row


def test_every_event_carries_record_time_and_occurred_time(
        store_url: str, open_ledger: Open, clock: ManualClock) -> None:
    app = issued(open_ledger, store_url)
    then = clock.now() - timedelta(hours=2)
    app.execute([ConnectSite("north")])
    app.execute([SyncSite("north", (OfflineEvent(1, "grant", "off", "PRED", then),),
                          (HeldSeat("off", "PRED"),))])
    events = [e for _, e in app.events()]
    granted = [e for e in events if type(e).__name__ == "SeatGranted"][-1]
    assert granted.occurred_at == then and granted.timestamp == clock.now()
    assert granted.offline is True
    assert all(e.timestamp >= prev.timestamp for prev, e in zip(events, events[1:], strict=False))


def test_states_are_encrypted_at_rest(store_url: str, open_ledger: Open) -> None:
    app = issued(open_ledger, store_url)
    app.execute([AcquireSeat("north", "very-recognisable-user", "PRED", "tenant-x", "camp-y")])
    raw = b"".join(n.state for n in app.notifications())
    assert b"very-recognisable-user" not in raw and b"tenant-x" not in raw
    assert "very-recognisable-user" in {getattr(e, "user", "") for _, e in app.events()}


def test_a_wrong_key_is_a_clear_error_and_changes_nothing(
        store_url: str, open_ledger: Open) -> None:
    issued(open_ledger, store_url).close()
    count = open_ledger(store_url, read_only=True).max_id()
    with pytest.raises(KeyFileError, match="at-rest key does not open this store"):
        open_ledger(store_url, key=os.urandom(32))
    reopened = open_ledger(store_url)
    assert reopened.max_id() == count and reopened.verify().ok


def test_snapshots_are_taken_and_used(store_url: str, open_ledger: Open) -> None:
    app = issued(open_ledger, store_url, snapshot_every=100)
    for n in range(3):
        app.execute([AcquireSeat("north", f"u{n}-{i}", "PRED") for i in range(30)])
        app.execute([ReleaseSeat("north", f"u{n}-{i}") for i in range(30)])
    assert app._app.snapshots is not None
    snaps = app._app.snapshots.get(app.licence.id)
    assert list(snaps), "no snapshot was stored"
    state = app.licence
    app.close()
    assert open_ledger(store_url).licence.sites == state.sites


def test_seal_verifies_and_checkpoints_are_recorded(store_url: str, open_ledger: Open) -> None:
    app = issued(open_ledger, store_url, checkpoint_every=50)
    for i in range(12):
        app.execute([AcquireSeat("north", f"u{i}-{j}", "PRED") for j in range(8)])
    app.execute([Tick()])
    app.close()
    app = open_ledger(store_url)
    report = app.verify()
    assert report.ok, report.problem
    assert report.records == app.max_id()
    assert report.signed_notes >= 1
    notes = [n for n in app.notifications() if n.topic.endswith(CHECKPOINT_TOPIC_SUFFIX)]
    assert len(notes) == report.signed_notes


def test_a_commit_racing_another_writer_fails_whole_and_the_ledger_reloads(
        store_url: str, open_ledger: Open) -> None:
    from ledger import StoreError

    master = issued(open_ledger, store_url)
    operator = open_ledger(store_url)
    operator.enrol_site("east")  # committed behind the master's back
    with pytest.raises(StoreError):
        master.execute([AcquireSeat("north", "u1", "PRED")])
    assert "east" in master.licence.sites  # reloaded: the operator's change is visible
    outcome = master.execute([AcquireSeat("north", "u1", "PRED")])[0]
    assert isinstance(outcome, Grant) and outcome.seat == 1
    assert master.verify().ok
