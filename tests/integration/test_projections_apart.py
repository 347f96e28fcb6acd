"""The read models live beside the ledger's store, never in it: an SQLite file of their own
(owner-only, as the store), or a PostgreSQL schema of their own. So the follower, which
opens the ledger read-only, never holds the store's write lock while it applies a batch."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection

from ledger import AcquireSeat, Grant, LedgerApp, ManualClock
from projections import VIEWS_SCHEMA, ProjectionError, ProjectionRunner, views_url
from seatledger.cli.main import main
from seatledger.daemons.follower import FOLLOWER_NICENESS
from tests.conftest import START
from tests.licensing import licensed_data_dir
from tests.processes import die_with_parent


@pytest.fixture
def umask_022() -> Iterator[None]:
    """A permissive umask, so that only what the code asks for makes a file owner-only."""
    was = os.umask(0o022)
    yield
    os.umask(was)


def a_day(url: str, keys: dict[str, Any], **kwargs: Any) -> LedgerApp:
    app = LedgerApp(url, clock=ManualClock(START), **keys, **kwargs)
    app.issue_licence(customer="Acme", limits={"PRED": 100})
    app.enrol_site("north")
    app.execute([AcquireSeat("north", f"u{n}", "PRED") for n in range(10)])
    return app


def sqlite_tables(path: Path) -> set[str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    db.close()
    return names


def test_the_views_url_is_beside_the_store() -> None:
    assert views_url("sqlite:////srv/seatledger/ledger.db") == \
        "sqlite:////srv/seatledger/ledger.views.db"
    assert views_url("sqlite:///srv/data/store") == "sqlite:////srv/data/store.views"
    assert views_url("postgresql://u:p@db:5432/seatledger") == \
        "postgresql://u:p@db:5432/seatledger?options=-csearch_path%3Dseatledger_views"
    # the store's own options are kept
    assert views_url("postgresql://db/s?options=-cstatement_timeout%3D5000&sslmode=require") \
        == ("postgresql://db/s?options=-cstatement_timeout%3D5000+-csearch_path%3D"
            "seatledger_views&sslmode=require")
    with pytest.raises(ProjectionError, match="unsupported store URL scheme 'mysql'"):
        views_url("mysql://db/s")


def test_sqlite_views_are_a_file_of_their_own_owner_only(
        tmp_path: Path, keys: dict[str, Any], umask_022: None) -> None:
    with a_day(f"sqlite:///{tmp_path}/ledger.db", keys) as app, \
            ProjectionRunner(app) as runner:
        runner.run_once()
        assert runner.positions() == dict.fromkeys(runner.names, app.max_id())
        views = tmp_path / "ledger.views.db"
        files = sorted(p.name for p in tmp_path.glob("ledger.views.db*"))
        assert files == ["ledger.views.db", "ledger.views.db-shm", "ledger.views.db-wal"]
        modes = {name: oct(stat.S_IMODE((tmp_path / name).stat().st_mode)) for name in files}
        assert modes == dict.fromkeys(files, "0o600")
        assert "view_tracking" in sqlite_tables(views)
        assert not {t for t in sqlite_tables(views) if not t.startswith("view_")}
    in_store = sqlite_tables(tmp_path / "ledger.db")
    assert "events" in in_store and not [t for t in in_store if t.startswith("view_")]


def test_postgres_views_are_a_schema_of_their_own(pg_url: str, keys: dict[str, Any]) -> None:
    with a_day(pg_url, keys) as app, ProjectionRunner(app) as runner:
        runner.run_once()
        status = runner.status()
        assert status is not None and status.customer == "Acme"
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT table_schema, table_name FROM information_schema.tables "
                            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
                            ).fetchall()
    schemas: dict[str, set[str]] = {}
    for schema, table in rows:
        schemas.setdefault(schema, set()).add(table)
    assert set(schemas) == {"public", VIEWS_SCHEMA}
    assert all(t.startswith("view_") for t in schemas[VIEWS_SCHEMA])
    assert "view_tracking" in schemas[VIEWS_SCHEMA]
    assert not any(t.startswith("view_") for t in schemas["public"])
    assert "seatledger_events" in schemas["public"]  # the ledger's own tables stay where they were


def test_the_follower_never_holds_the_stores_write_lock(tmp_path: Path, keys: dict[str, Any],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """As a master and its follower: the writer commits while the follower's runner, on a
    read-only ledger, is inside the transaction that applies a batch."""
    store = tmp_path / "ledger.db"
    master = a_day(f"sqlite:///{store}", keys)
    follower = LedgerApp(f"sqlite:///{store}", read_only=True, **keys)
    runner = ProjectionRunner(follower)
    seen: list[str] = []
    flush = runner.projections["status"].flush

    def flush_then_commit(conn: Connection) -> None:
        flush(conn)
        if seen:
            return  # once: the batch that reads the master's record below just applies it
        # Inside the runner's write transaction: the views' file is locked ...
        views = sqlite3.connect(tmp_path / "ledger.views.db", timeout=0, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            views.execute("BEGIN IMMEDIATE")
        views.close()
        # ... and the store's is free: another connection takes it at once, and the
        # master commits.
        probe = sqlite3.connect(store, timeout=0, isolation_level=None)
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        probe.close()
        outcome = master.execute([AcquireSeat("north", f"during{len(seen)}", "PRED")])[0]
        assert isinstance(outcome, Grant)
        seen.append("committed")

    monkeypatch.setattr(runner.projections["status"], "flush", flush_then_commit)
    try:
        runner.run_once()
    finally:
        runner.close()
        follower.close()
        master.close()
    assert seen == ["committed"]


def test_the_follower_process_runs_while_another_holds_the_stores_write_lock(
        tmp_path: Path) -> None:
    """``seatledger projections follow`` (the master's child) brings the views level with
    the store while another connection holds the store's write lock throughout: it never
    needs it (with the views in the store's file it would wait for it, then fail)."""
    root, _vendor = licensed_data_dir(tmp_path, "PRED=100")
    assert main(["site", "enrol", "north", "--data-dir", str(root)]) == 0
    store = root / "ledger.db"
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        top = db.execute("SELECT MAX(id) FROM events").fetchone()[0]
    db.close()
    holder = sqlite3.connect(store, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    follower = subprocess.Popen(
        [sys.executable, "-m", "seatledger.cli", "projections", "follow", "--poll", "0.1",
         "--data-dir", str(root)], preexec_fn=die_with_parent)
    try:
        positions: set[int] = set()
        deadline = time.monotonic() + 30
        while positions != {top} and time.monotonic() < deadline:
            time.sleep(0.1)
            assert follower.poll() is None, "the follower stopped"
            views = root / "ledger.views.db"
            if views.exists() and "view_tracking" in sqlite_tables(views):
                with sqlite3.connect(f"file:{views}?mode=ro", uri=True) as db:
                    positions = {r[0] for r in db.execute("SELECT position FROM view_tracking")}
                db.close()
        assert positions == {top}
    finally:
        follower.terminate()
        follower.wait(timeout=30)
        holder.execute("ROLLBACK")
        holder.close()


def test_views_left_in_an_older_store_are_not_used_and_the_new_file_starts_at_zero(
        tmp_path: Path, keys: dict[str, Any]) -> None:
    """An older version kept the views in the store's file: the runner builds its own file
    from position 0, and leaves the old tables as they were (never read again)."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    with a_day(url, keys) as app:
        with ProjectionRunner(app, engine_url=url) as old:  # where an older version had them
            old.run_once()
            old_status = old.status()
        assert "view_tracking" in sqlite_tables(tmp_path / "ledger.db")
        assert not (tmp_path / "ledger.views.db").exists()
        with ProjectionRunner(app) as runner:
            assert set(runner.positions().values()) == {0}
            assert runner.run_once() == app.max_id()
            assert runner.status() == old_status
        assert "view_tracking" in sqlite_tables(tmp_path / "ledger.db")  # left in place


@pytest.mark.parametrize("written_after", [0, 40])
def test_views_ahead_of_a_restored_store_start_afresh(
        tmp_path: Path, keys: dict[str, Any], written_after: int) -> None:
    """The store restored from an older backup, the views' file left as it was: ahead of
    the store (``written_after`` 0), or on the history the restore discarded once the
    master has written past them again. Either way they are rebuilt, never trusted."""
    store = tmp_path / "ledger.db"
    url = f"sqlite:///{store}"
    clock = ManualClock(START)
    app = LedgerApp(url, clock=clock, **keys)
    app.issue_licence(customer="Acme", limits={"PRED": 100})
    app.enrol_site("north")
    with sqlite3.connect(tmp_path / "backup.db") as backup, sqlite3.connect(store) as live:
        live.backup(backup)
    backup.close()
    live.close()
    for n in range(30):
        clock.advance(minutes=1)
        app.execute([AcquireSeat("north", f"u{n}", "PRED")])
    with ProjectionRunner(app) as runner:
        runner.run_once()
        ahead = app.max_id()
        assert set(runner.positions().values()) == {ahead}
    app.close()
    for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    (tmp_path / "backup.db").rename(store)

    app = LedgerApp(url, clock=clock, **keys)
    for n in range(written_after):
        clock.advance(minutes=1)
        app.execute([AcquireSeat("north", f"v{n}", "PRED")])
    assert (app.max_id() > ahead) == (written_after > 0)
    with ProjectionRunner(app) as runner:
        assert set(runner.positions().values()) == {0}
        runner.run_once()
        status = runner.status()
        assert status is not None
        assert status.seats_in_use == written_after == len(app.licence.sites["north"].seats)
    app.close()


@pytest.mark.parametrize("as_masters_child", [True, False])
def test_the_masters_follower_defers_to_it_for_the_cpu(tmp_path: Path,
                                                       as_masters_child: bool) -> None:
    """Run as the master's child (``--parent-pid``) the follower lowers its priority by
    FOLLOWER_NICENESS, so that its bursts do not take a core from the master; an
    operator's own ``projections follow`` keeps the priority it was started with."""
    root, _vendor = licensed_data_dir(tmp_path, "PRED=100")
    extra = ["--parent-pid", str(os.getpid())] if as_masters_child else []
    follower = subprocess.Popen(
        [sys.executable, "-m", "seatledger.cli", "projections", "follow", "--poll", "0.1",
         "--data-dir", str(root), *extra], preexec_fn=die_with_parent)
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    expected = min(ours + FOLLOWER_NICENESS, 19) if as_masters_child else ours
    views = root / "ledger.views.db"

    def following() -> bool:  # its first pass is done: it has long since set its priority
        return views.exists() and "view_tracking" in sqlite_tables(views)

    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not following():
            assert follower.poll() is None, "the follower stopped"
            time.sleep(0.05)
        assert following()
        assert os.getpriority(os.PRIO_PROCESS, follower.pid) == expected
    finally:
        follower.terminate()
        follower.wait(timeout=30)


def test_the_follower_ends_on_a_burst_of_sigterms(tmp_path: Path) -> None:
    """Its SIGTERM handler takes no lock: a second signal that lands while the first one's
    handler runs (the kernel's parent-death signal, then the supervisor's) once deadlocked
    it on its own threading.Event, and it outlived the master it followed."""
    root, _vendor = licensed_data_dir(tmp_path, "PRED=100")
    follower = subprocess.Popen(
        [sys.executable, "-m", "seatledger.cli", "projections", "follow", "--poll", "0.1",
         "--data-dir", str(root)], preexec_fn=die_with_parent)
    views = root / "ledger.views.db"
    try:
        deadline = time.monotonic() + 30
        while not (views.exists() and "view_tracking" in sqlite_tables(views)):
            assert follower.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        for _ in range(300):
            if follower.poll() is not None:
                break
            os.kill(follower.pid, signal.SIGTERM)
        assert follower.wait(timeout=10) == 0
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
