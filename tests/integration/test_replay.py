"""LedgerApp.replay() on a real store holding every event type: its fast path (rows decoded
straight into events, eventsourcing's mutate() done inline) rebuilds exactly the licence the
live commands built, and exactly what the library's mutate() rebuilds event by event; the
store reopened from its snapshot agrees; a damaged or reordered log is refused, not
replayed into a wrong licence."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.domain import CanMutateAggregate, OriginatorVersionError
from eventsourcing.persistence import MapperDeserialisationError

from ledger import (
    AcquireSeat,
    ConnectSite,
    DisconnectSite,
    HeldSeat,
    LedgerApp,
    Licence,
    LinkUpstream,
    ManualClock,
    OfflineEvent,
    ReleaseSeat,
    StoreError,
    SyncSite,
)
from ledger.domain.terms import ExportObligation, LicenceTerms
from ledger.domain.values import GracePolicy

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)
BEGINNINGS = {"trial": "TrialStarted", "issued": "LicenceIssued"}


def terms(app: LedgerApp) -> LicenceTerms:
    """PRED 2, ACD 1 (VIR pads it to the licence minimum), PBX on 10 agent-hours alone,
    4 hours of grace, exports tolerated 3 days late, expiring in 30 days."""
    return LicenceTerms(customer="c", licence_id="C-0001", serial=1, issued_at=T0,
                        expires_at=T0 + timedelta(days=30),
                        limits={"PRED": 2, "ACD": 1, "VIR": 99}, master_origin="m",
                        master_key=app.master_key,
                        export=ExportObligation(("age1x",), tolerated_days=3),
                        policy=GracePolicy(4 * 3600, 24 * 3600, None), hours={"PBX": 10})


def history(app: LedgerApp, clock: ManualClock, beginning: str) -> None:
    """Five weeks of one master, touching every event type (see event_types)."""
    if beginning == "issued":
        app.issue_licence(customer="c", limits={"PRED": 100})
    else:
        app.start_trial()
    assert app.install_licence(terms(app), licence_file="licence", sha256="1" * 64, issuer="v")
    app.refuse_licence(sha256="f" * 64, reason="bad_signature", detail="edited")
    app.execute([LinkUpstream("up.example", "branch", "sha256:" + "a" * 64)])
    app.enrol_site("north", local_limits={"PRED": 3})
    app.enrol_site("south")
    app.enrol_site("east")
    app.execute([ConnectSite("north"), ConnectSite("south"), ConnectSite("east")])
    clock.advance(minutes=1)
    # PRED over its limit (grace opens), then over north's local limit (refused).
    app.execute([AcquireSeat("north", f"n{i}", "PRED", "acme", "sales") for i in range(4)])
    app.execute([AcquireSeat("south", "s0", "ACD", "globex", "care"),
                 AcquireSeat("south", "p0", "PBX"), AcquireSeat("south", "p1", "PBX")])
    for _ in range(6):  # grace expires, PBX's hours run low and out
        clock.advance(hours=1)
        app.tick()
    app.execute([ReleaseSeat("north", "n0"), ReleaseSeat("south", "p0")])
    app.execute([DisconnectSite("east")])
    clock.advance(hours=2)
    app.tick()  # east is cut off
    app.execute([ConnectSite("east")])
    app.execute([SyncSite("east", (OfflineEvent(1, "grant", "e0", "PRED", clock.now() - H),
                                   OfflineEvent(2, "grant", "e1", "PBX", clock.now() - 3 * H)),
                          (HeldSeat("e0", "PRED"), HeldSeat("e1", "PBX")))])
    app.amend_licence(limits={"PRED": 10, "ACD": 2, "VIR": 99})
    app.record_export("2026-03-02", 1, 20, "file:///exports", "0" * 64)
    for _ in range(6):  # exports overdue
        clock.advance(days=1)
        app.tick()
    app.record_export("2026-03-08", 21, app.max_id(), "file:///exports", "1" * 64)
    app.revoke_site("south")
    app.release_seats("north")
    clock.set(clock.now() - timedelta(minutes=10))  # the wall clock steps back
    app.execute([AcquireSeat("east", "e2", "ACD")])
    for _ in range(30):  # expiry notices, then expiry
        clock.advance(days=1)
        app.tick()


def event_types(beginning: str) -> set[str]:
    """Every concrete event class of the licence but the other beginning."""
    names = {name for name, value in vars(Licence).items()
             if isinstance(value, type) and issubclass(value, CanMutateAggregate)
             and not name.startswith("_")}
    other = {b for k, b in BEGINNINGS.items() if k != beginning}
    return names - {"Event", "Created"} - other


def open_app(url: str, clock: ManualClock, keys: dict[str, Any]) -> LedgerApp:
    return LedgerApp(url, clock=clock, checkpoint_every=10, snapshot_every=15, **keys)


@pytest.mark.parametrize("beginning", sorted(BEGINNINGS))
def test_replay_rebuilds_the_live_licence_from_every_event_type(
        store_url: str, clock: ManualClock, keys: dict[str, Any], beginning: str) -> None:
    """On SQLite the fast path; on PostgreSQL the library's notifications, decoded alike."""
    clock.set(T0)
    app = open_app(store_url, clock, keys)
    history(app, clock, beginning)
    events = [event for _, event in app.events()]
    recorded = {type(event).__name__ for event in events}
    missing = event_types(beginning) - recorded
    assert not missing, f"extend history() so that replay is checked on {sorted(missing)}"

    live = app.licence
    replayed = app.replay()
    assert replayed is not None and replayed is not live
    assert vars(replayed) == vars(live)
    # The library's path: every event through eventsourcing's own mutate().
    slow: Licence | None = None
    for event in events:
        slow = event.mutate(slow)
    assert slow is not None and vars(replayed) == vars(slow)
    assert (replayed.version, replayed.modified_on) == (len(events), live.modified_on)
    app.close()

    # Reopened: the latest snapshot plus the events after it, which replay() ignores.
    again = open_app(store_url, clock, keys)
    try:
        assert again._app.snapshots is not None
        assert list(again._app.snapshots.get(again.licence.id)), "no snapshot was taken"
        replayed = again.replay()
        assert replayed is not None
        reopened = again.licence
        assert (reopened.version, reopened.modified_on) == (replayed.version,
                                                            replayed.modified_on)
        assert reopened.pools == replayed.pools and reopened.sites == replayed.sites
        assert reopened.hours_balances == replayed.hours_balances
        assert tuple(reopened.upstream or ()) == tuple(replayed.upstream or ())
        # Later saves continue the replayed version.
        again.execute([AcquireSeat("east", "after", "ACD")])
        assert again.licence.version == replayed.version + 1
    finally:
        again.close()


def plain_store(tmp_path: Path, clock: ManualClock) -> Path:
    """A store without the at-rest cipher (so that rows can be reordered without failing
    authentication first) holding a licence, two sites and a few seats."""
    db = tmp_path / "plain.db"
    app = LedgerApp(f"sqlite:///{db}", key=None, signing_key=Ed25519PrivateKey.generate(),
                    clock=clock)
    app.issue_licence(customer="c", limits={"PRED": 100})
    app.enrol_site("north")
    for i in range(4):
        clock.advance(minutes=1)
        app.execute([AcquireSeat("north", f"u{i}", "PRED")])
    app.close()
    return db


def test_replay_refuses_a_log_whose_versions_are_out_of_order(
        tmp_path: Path, clock: ManualClock) -> None:
    db = plain_store(tmp_path, clock)
    with sqlite3.connect(db, isolation_level=None) as conn:
        conn.execute("UPDATE events SET version = -1 WHERE id = 4")
        conn.execute("UPDATE events SET version = 4 WHERE id = 5")
        conn.execute("UPDATE events SET version = 5 WHERE version = -1")
    app = LedgerApp(f"sqlite:///{db}", key=None, signing_key=Ed25519PrivateKey.generate(),
                    clock=clock, read_only=True)
    try:
        # Record 4 holds version 5 where version 4 was due.
        with pytest.raises(OriginatorVersionError, match=r"^\(5, 4\)$"):
            app.replay()
    finally:
        app.close()


def test_replay_refuses_an_altered_record(tmp_path: Path, clock: ManualClock,
                                         keys: dict[str, Any]) -> None:
    db = tmp_path / "ledger.db"
    app = open_app(f"sqlite:///{db}", clock, keys)
    app.issue_licence(customer="c", limits={"PRED": 100})
    app.enrol_site("north")
    app.execute([AcquireSeat("north", "u", "PRED")])
    app.close()
    with sqlite3.connect(db, isolation_level=None) as conn:
        state = bytearray(conn.execute("SELECT state FROM events WHERE id = 3").fetchone()[0])
        state[-1] ^= 0x01
        conn.execute("UPDATE events SET state = ? WHERE id = 3", (bytes(state),))
    app = LedgerApp(f"sqlite:///{db}", clock=clock, read_only=True, **keys)
    try:
        with pytest.raises(MapperDeserialisationError, match="event 3 of .*fails authentication"):
            app.replay()
    finally:
        app.close()


def test_replay_of_an_empty_store_is_none(tmp_path: Path, clock: ManualClock) -> None:
    app = LedgerApp(f"sqlite:///{tmp_path / 'empty.db'}", key=os.urandom(32),
                    signing_key=Ed25519PrivateKey.generate(), clock=clock)
    try:
        assert app.replay() is None
    finally:
        app.close()


def state(licence: Licence) -> dict[str, Any]:
    """A licence's state to compare (a snapshot gives the upstream link back as a list)."""
    return {**vars(licence), "upstream": tuple(licence.upstream or ())}


def test_a_copy_absorbs_the_records_a_writer_committed(
        tmp_path: Path, clock: ManualClock, keys: dict[str, Any]) -> None:
    """A writer process's records, as stored, bring a master's copy level with the writer
    (LedgerApp.absorb: the same apply_events as replay); records that do not follow the
    copy are refused whole, as a StoreError, and the copy reloads."""
    clock.set(T0)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    writer = open_app(url, clock, keys)
    history(writer, clock, "trial")
    copy = open_app(url, clock, keys)
    writer.keep_fed = True
    writer.execute([AcquireSeat("east", "later", "ACD"), ReleaseSeat("east", "e2")])
    writer.tick()
    records = writer.take_fed()
    assert len(records) >= 2 and writer.take_fed() == []
    copy.absorb(records)
    assert state(copy.licence) == state(writer.licence)
    version = copy.licence.version
    with pytest.raises(StoreError, match="do not follow"):
        copy.absorb(records)  # again: the versions no longer follow
    copy.reload()
    assert copy.licence.version == version and state(copy.licence) == state(writer.licence)
    copy.close()
    writer.close()
