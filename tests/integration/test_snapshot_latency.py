"""The idle ledger's housekeeping that commits would otherwise pay for: a tick that records
nothing takes the due snapshot and then, once enough was committed since the last time,
copies SQLite's write-ahead log into the database file (so that no commit is the one that
grows the log past SQLite's auto-checkpoint threshold), waiting for no commit or reader."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from ledger import AcquireSeat, LedgerApp, ManualClock
from ledger.persistence.store import IDLE_CHECKPOINT_COMMITS

Open = Callable[..., LedgerApp]


def snapshot_count(app: LedgerApp) -> int:
    assert app._app.snapshots is not None
    return len(list(app._app.snapshots.get(app.licence.id)))


def in_database_file(path: Path, sql: str) -> int:
    """``sql``'s count as the database file alone has it (``immutable``: the log unread)."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:  # the tables themselves are still only in the log
        return 0
    finally:
        conn.close()


def test_an_idle_tick_snapshots_then_copies_a_grown_log_into_the_database_file(
        open_ledger: Open, clock: ManualClock, tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    app = open_ledger(snapshot_every=20, snapshot_when_idle=True)
    app.issue_licence(customer="Acme", limits={"PRED": 100})
    app.enrol_site("north")

    def commits(count: int) -> None:
        for _ in range(count):
            clock.advance(seconds=1)
            app.execute([AcquireSeat("north", f"u{app.max_id()}", "PRED")])

    commits(IDLE_CHECKPOINT_COMMITS // 2)
    app.tick()  # nothing is due: the ledger is idle, and takes the due snapshot
    assert snapshot_count(app) == 1
    # Too few commits to be worth a checkpoint (far below SQLite's own, at 1000 pages).
    assert in_database_file(db, "SELECT COUNT(*) FROM events") < app.max_id()
    commits(IDLE_CHECKPOINT_COMMITS // 2)
    app.tick()
    assert in_database_file(db, "SELECT COUNT(*) FROM events") == app.max_id()
    assert in_database_file(db, "SELECT COUNT(*) FROM stored_snapshots") == snapshot_count(app) == 2
    commits(1)  # the log starts afresh
    live = app.licence
    app.close()
    again = open_ledger()
    replayed = again.replay()
    assert replayed is not None
    assert (again.licence.version, again.licence.sites) == (live.version, live.sites)
    assert (replayed.version, replayed.sites) == (live.version, live.sites)


def checkpoint_beside(app: LedgerApp) -> None:
    """Checkpoint in a thread of its own, as while this one is in the middle of a commit;
    fails if the checkpoint raised or did not end (it waited for that commit)."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            app.recorder.checkpoint_wal()
        except BaseException as e:
            failed.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the checkpoint waited for the commit in flight"
    assert not failed, failed


def test_the_checkpoint_waits_for_no_commit_and_no_reader(
        ledger: LedgerApp, tmp_path: Path) -> None:
    """A commit in flight (the commit connection taken, SQLite's write lock held) and a
    reader holding an older view: the checkpoint takes neither lock, so no commit waits for
    it; it copies all that the reader does not pin, and the reader's view holds."""
    db = tmp_path / "ledger.db"
    reader = sqlite3.connect(db, isolation_level=None)
    try:
        reader.execute("BEGIN")
        seen = reader.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        ledger.execute([AcquireSeat("north", "u1", "PRED")])
        with ledger.recorder._commit_connection() as committing:
            committing.execute("BEGIN IMMEDIATE")
            checkpoint_beside(ledger)
            assert reader.execute("SELECT COUNT(*) FROM events").fetchone()[0] == seen
            reader.execute("COMMIT")
            checkpoint_beside(ledger)
            committing.execute("ROLLBACK")
        assert in_database_file(db, "SELECT COUNT(*) FROM events") == ledger.max_id() == seen + 1
    finally:
        reader.close()
    ledger.execute([AcquireSeat("north", "u2", "PRED")])
    assert ledger.verify().ok
