"""The runner: follows the ledger's notification log into the read models, exactly once.

Theory of operation. Each read model has a tracked position (``view_tracking``): the last
notification id its tables include. The runner reads records after the lowest position in
batches, decodes each record once, hands the event to every read model that has not seen
it, and then, in ONE database transaction, writes what the batch changed in each model's
tables and moves each model's position to the batch's last id. A crash anywhere leaves the
tables and positions as of the last committed batch; the runner (or a new one) discards its
memory state, reloads from the tables and carries on from the stored positions, so nothing
is counted twice or missed. Moving a position checks its old value (compare-and-set), so two
runners on one database cannot both apply a batch.

SQLite has no notifications, so a daemon calls :meth:`ProjectionRunner.nudge` after each
commit; :meth:`ProjectionRunner.follow` also polls, in case a nudge is missed or another
process writes the store. The master is the only writer of the log and commits in order, so
the log never gains a record below a position already passed.

In a daemon: run ``runner.follow(poll_seconds)`` in a worker thread (it blocks), call
``runner.nudge()`` after each group commit, read ``runner.status()`` from any thread (an
immutable snapshot of the last committed batch), and call ``runner.stop_following()`` then
join the thread to stop. Errors other than a lost race with another runner propagate out of
``follow``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.exc import SQLAlchemyError

from ledger.application import LedgerApp
from ledger.persistence.schema_lock import lock_schema
from ledger.persistence.store import collector_paused

from . import tracking
from .base import Handler, Projection
from .engine import make_engine, views_schema, views_url
from .errors import ConcurrentRunnerError, UnknownProjectionError, ViewStoreError
from .feed import FeedReceiver, follows
from .labels import Labels, bind
from .live_status import LiveStatusProjection, Status, read_status
from .point_in_time import (
    HistoryEntry,
    PointInTimeProjection,
    RefusalAnswer,
    StateAt,
    state_at,
    user_history,
    why_refused,
)
from .schema import METADATA, TABLES_BY_PROJECTION, fingerprint
from .schema import tracking as tracking_table
from .timestamps import to_us
from .usage import UsageProjection, UsageReport, usage_report

PROJECTIONS: dict[str, type[Projection]] = {
    LiveStatusProjection.name: LiveStatusProjection,
    UsageProjection.name: UsageProjection,
    PointInTimeProjection.name: PointInTimeProjection,
}
# Records per transaction, at most. Larger batches replay much faster: a seat granted and
# released within one batch costs one row instead of four, and each batch rewrites the hot
# rows and pages once (1M records: about 30k/s in batches of 1000, 40k/s of 10,000, over
# 50k/s of 50,000). Smaller ones hold SQLite's write lock for less time (a 50,000 batch
# commits in a few tenths of a second). A live runner, nudged after each commit, sees only
# the records since the last one, so this bounds backlogs (rebuilds, catching up) only.
DEFAULT_BATCH = 50_000
# How long a fed follower lets commits gather after applying some (see follow).
FEED_GATHER_SECONDS = 0.1

Progress = Callable[[int], None]
BatchHook = Callable[[str, int], None]


class ProjectionRunner:
    """Keeps the read models of one ledger up to date, beside the ledger's store.

    ``engine_url`` defaults to the views' place beside the store (:func:`.engine.views_url`:
    an SQLite file of their own, or a PostgreSQL schema of their own), so that the runner
    never writes the store itself. ``batch_hook(stage, n)`` is called with
    ``("applied", n)`` before the n-th batch commits and ``("committed", n)`` after; tests
    raise from it to simulate a crash.

    Labels (sites, users, tenants, campaigns, the customer) are sealed in the tables under a
    key derived from the ledger's at-rest key (:mod:`.labels`); the query functions open
    them when given a connection of :attr:`engine`.
    """

    def __init__(self, app: LedgerApp, engine_url: str | None = None, *,
                 names: Iterable[str] | None = None, batch_size: int = DEFAULT_BATCH,
                 batch_hook: BatchHook | None = None) -> None:
        self.app = app
        self.names = check_names(names)
        self.batch_size = batch_size
        self.batch_hook = batch_hook
        url = engine_url or views_url(app.url)
        self.engine: Engine = make_engine(url)
        self._schema = views_schema(url)
        self.labels = Labels.for_cipher(app.cipher)
        bind(self.engine, self.labels)
        self.projections: dict[str, Projection] = {
            n: PROJECTIONS[n](self.labels) for n in self.names}
        self._positions: dict[str, int] = {}
        self._loaded = False
        self._dispatch_cache: dict[frozenset[str], dict[type, tuple[Handler, ...]]] = {}
        self._nudged = threading.Event()
        self._stopping = False
        self._batches = 0
        self._events = 0
        self._fed = 0
        self._last_run_seconds = 0.0

    # ---------------------------------------------------------------- setup
    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> ProjectionRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._transaction() as conn:
            scrub = self._prepare(conn)
        if scrub:
            self._truncate_wal()
        with self._connection() as conn:
            positions = tracking.read_positions(conn)
            self._positions = {n: positions[n] for n in self.names}
            for projection in self.projections.values():
                projection.load(conn)
        self._loaded = True

    def _prepare(self, conn: Connection) -> bool:
        """Create what is missing; start afresh a read model never tracked, whose tables
        changed shape (or key) since (read models are disposable: no migrations), or whose
        position the store does not hold (see _off_the_log).

        Returns True if tables of another version were dropped: their pages are then
        zeroed, as tables written by an older version may hold labels in clear, and the
        caller truncates the SQLite write-ahead log, which may hold copies of them too.
        """
        lock_schema(conn)  # two followers preparing one fresh database queue here
        if self._schema is not None:
            conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"')
        found = inspect(conn)
        dropped = False
        with _secure_delete(conn):
            if found.has_table(tracking_table.name) and (
                    {c["name"] for c in found.get_columns(tracking_table.name)}
                    != {c.name for c in tracking_table.columns}):
                # A tracking table from another version: nothing it says can be trusted.
                every = [t for ts in TABLES_BY_PROJECTION.values() for t in ts]
                METADATA.drop_all(conn, tables=[*every, tracking_table], checkfirst=True)
                dropped = True
            METADATA.create_all(conn, tables=[tracking_table], checkfirst=True)
            schemas = tracking.read_schemas(conn)
            for name, projection in self.projections.items():
                tables = list(projection.tables)
                schema = fingerprint(projection.tables, conn.dialect, self.labels.check)
                if schemas.get(name) != schema:
                    dropped = dropped or any(found.has_table(t.name) for t in tables)
                    METADATA.drop_all(conn, tables=tables, checkfirst=True)
                    tracking.forget(conn, name)
                    tracking.start(conn, name, schema)
                METADATA.create_all(conn, tables=tables, checkfirst=True)
            for name in self._off_the_log(conn):
                self._start_afresh(conn, name)
        return dropped and conn.dialect.name == "sqlite"

    def _off_the_log(self, conn: Connection) -> list[str]:
        """Read models whose position the store does not hold as they applied it.

        The views are not in the store's file: a store restored from an older backup, or
        views copied from another time, leave them ahead of the store or on another
        history, where they would skip records. The record time of the event at each
        position tells (a record written again under the same id has another)."""
        checked: dict[tuple[int, int | None], bool] = {}
        stale = []
        for name, mark in tracking.read_marks(conn).items():
            if name not in self.projections or mark[0] == 0:
                continue
            if mark not in checked:
                checked[mark] = self._store_holds(*mark)
            if not checked[mark]:
                stale.append(name)
        return stale

    def _store_holds(self, position: int, event_us: int | None) -> bool:
        """Whether the store holds record ``position``, recorded at ``event_us`` if known."""
        notes = self.app.recorder.select_notifications(position, 1)
        if not notes or notes[0].id != position:
            return False
        event = self.app.decode(notes[0])
        return event_us is None or not hasattr(event, "timestamp") or \
            to_us(event.timestamp) == event_us

    def _start_afresh(self, conn: Connection, name: str) -> None:
        """Drop a read model's tables, recreate them empty and track it from zero."""
        projection = self.projections[name]
        tables = list(projection.tables)
        METADATA.drop_all(conn, tables=tables, checkfirst=True)
        METADATA.create_all(conn, tables=tables)
        tracking.forget(conn, name)
        tracking.start(conn, name, fingerprint(projection.tables, conn.dialect,
                                               self.labels.check))

    def _truncate_wal(self) -> None:
        """Checkpoint the SQLite write-ahead log and truncate it to nothing, so that no
        frame of dropped tables outlives them in ``-wal``. Best effort: with a reader in
        another process the log is checkpointed as far as it can be, and is overwritten by
        later commits."""
        try:
            with self.engine.connect() as conn:
                driver: Any = conn.connection.driver_connection
                driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except SQLAlchemyError as e:
            raise ViewStoreError(f"the views could not be written: {_first_line(e)}") from e

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as e:
            raise ViewStoreError(f"the views could not be written: {_first_line(e)}") from e

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as e:
            raise ViewStoreError(f"the views could not be read: {_first_line(e)}") from e

    # ---------------------------------------------------------------- catching up
    def positions(self) -> dict[str, int]:
        """Read model -> last notification id its tables include."""
        self._ensure_loaded()
        return dict(self._positions)

    def pending(self) -> int:
        """How many records the slowest read model is behind (an upper bound)."""
        self._ensure_loaded()
        return max(0, self.app.max_id() - min(self._positions.values()))

    def run_once(self, progress: Progress | None = None) -> int:
        """Apply every record not yet applied; return how many records were read.

        ``progress(done)`` is called after each committed batch. Raises ViewStoreError if
        the views cannot be written, StoreError if a record cannot be read, and
        ConcurrentRunnerError if another runner moved a position; in each case nothing of
        the failed batch is kept and the next call resumes from the stored positions.
        """
        self._ensure_loaded()
        started = time.perf_counter()
        done = 0
        source = self.app.decoded(min(self._positions.values()) + 1)
        try:
            while True:
                # A batch keeps many records alive until its commit: see collector_paused.
                with collector_paused():
                    batch = list(islice(source, self.batch_size))
                    if not batch:
                        break
                    self._apply(batch)
                done += len(batch)
                if progress is not None:
                    progress(done)
        except BaseException:
            # Memory may hold part of a batch that was not committed: the tables rule.
            self._loaded = False
            raise
        finally:
            self._last_run_seconds = time.perf_counter() - started
        return done

    def _apply(self, batch: Sequence[tuple[int, Any]]) -> None:
        """Apply a batch of (record id, event) and commit it with the positions."""
        first, last = batch[0][0], batch[-1][0]
        behind = [n for n in self.names if self._positions[n] < last]
        if not behind:
            return
        event: Any = None
        if all(self._positions[n] < first for n in behind):
            dispatch = self._dispatch(behind)
            for nid, event in batch:
                handlers = dispatch.get(type(event))
                if handlers:
                    for handler in handlers:
                        handler(nid, event)
        else:  # some read model is part-way through this batch (after a partial rebuild)
            singles = {n: self._dispatch([n]) for n in behind}
            for nid, event in batch:
                for n in behind:
                    if nid > self._positions[n]:
                        for handler in singles[n].get(type(event), ()):
                            handler(nid, event)
        self._batches += 1
        if self.batch_hook is not None:
            self.batch_hook("applied", self._batches)
        event_us = to_us(event.timestamp) if hasattr(event, "timestamp") else None
        with self._transaction() as conn:
            # Positions first: the compare-and-set also takes the row locks that keep a
            # second runner out until this transaction ends.
            for n in behind:
                tracking.advance(conn, n, self._positions[n], last, event_us)
            for n in behind:
                self.projections[n].flush(conn)
        for n in behind:
            self._positions[n] = last
        self._events += len(batch)
        if self.batch_hook is not None:
            self.batch_hook("committed", self._batches)

    def _dispatch(self, names: Sequence[str]) -> dict[type, tuple[Handler, ...]]:
        key = frozenset(names)
        table = self._dispatch_cache.get(key)
        if table is None:
            merged: dict[type, list[Handler]] = {}
            for n in self.names:
                if n in key:
                    for cls, handler in self.projections[n].handlers().items():
                        merged.setdefault(cls, []).append(handler)
            table = self._dispatch_cache[key] = {c: tuple(h) for c, h in merged.items()}
        return table

    def rebuild(self, names: Iterable[str] | None = None,
                progress: Progress | None = None) -> int:
        """Drop the named read models (default: all), recreate them empty and replay the
        whole log into them. Returns how many records were read."""
        chosen = check_names(names) if names is not None else self.names
        unknown = [n for n in chosen if n not in self.projections]
        if unknown:
            raise UnknownProjectionError(f"this runner does not run {', '.join(unknown)}")
        with self._transaction() as conn:
            scrub = self._prepare(conn)
            for name in chosen:
                self._start_afresh(conn, name)
        if scrub:
            self._truncate_wal()
        self._loaded = False
        return self.run_once(progress)

    # ---------------------------------------------------------------- following
    def nudge(self) -> None:
        """Tell a :meth:`follow` loop that new records were committed. Thread-safe."""
        self._nudged.set()

    def wait_nudged(self, timeout: float) -> bool:
        """Block until nudged or ``timeout`` seconds pass; True if nudged."""
        nudged = self._nudged.wait(timeout)
        self._nudged.clear()
        return nudged

    def follow(self, poll_seconds: float = 1.0, feed: FeedReceiver | None = None,
               gather_seconds: float = FEED_GATHER_SECONDS) -> None:
        """Catch up after every nudge, and every ``poll_seconds`` regardless, until
        :meth:`stop_following` is called. Meant for a worker thread of a daemon; errors
        propagate, except a lost race with another runner, which is simply retried.

        With a ``feed`` (the master's writer sending each commit: :mod:`.feed`), records
        that follow on from the read models' positions are applied as fed, without
        reading the store; the store is read after a gap, an unusable message, or
        ``poll_seconds`` of silence. Fed commits that come within ``gather_seconds`` of
        the last applied are applied together (a views transaction per master commit would
        cost the follower more than all the rest)."""
        self._stopping = False
        fed: tuple[bool, list[tuple[int, bytes, int, str, bytes]]] | None = None
        while not self._stopping:
            self._nudged.clear()
            try:
                if fed is None or not self.apply_fed(*fed):
                    self.run_once()
            except ConcurrentRunnerError:
                fed = None
                continue
            fed = None
            applied = time.monotonic()
            if feed is None or feed.closed:
                self._nudged.wait(poll_seconds)
            elif feed.wait(poll_seconds) and not self._stopping:
                pause = applied + gather_seconds - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                fed = feed.drain()

    def apply_fed(self, contiguous: bool,
                  rows: Sequence[tuple[int, bytes, int, str, bytes]]) -> bool:
        """Apply records a writer fed (:meth:`LedgerApp.decode_fed`) as far as they follow on
        from every read model's position with none missing. True if that was all of them;
        False if some did not follow (a message was lost, or ids have gaps): then
        :meth:`run_once` reads the rest from the store. Raises as :meth:`run_once`."""
        self._ensure_loaded()
        low = min(self._positions.values())
        if not contiguous:
            return False
        fresh = [r for r in rows if r[0] > low]
        if not fresh:
            return bool(rows)  # all applied already (read from the store meanwhile)
        whole = follows(fresh, low)
        if not whole:
            fresh = fresh[:next((n for n, r in enumerate(fresh) if r[0] != low + 1 + n))]
            if not fresh:
                return False
        started = time.perf_counter()
        try:
            with collector_paused():
                for at in range(0, len(fresh), self.batch_size):
                    self._apply(list(self.app.decode_fed(fresh[at:at + self.batch_size])))
        except BaseException:
            self._loaded = False  # memory may hold part of a batch: the tables rule
            raise
        finally:
            self._last_run_seconds = time.perf_counter() - started
        self._fed += len(fresh)
        return whole

    def stop_following(self, *, wake: bool = True) -> None:
        """Make :meth:`follow` return. Thread-safe. From a signal handler pass
        ``wake=False``: waking the loop takes a lock the interrupted thread may hold (the
        handler would wait for itself); the loop then sees the flag within its
        ``poll_seconds``."""
        self._stopping = True
        if wake:
            self._nudged.set()

    def statistics(self) -> dict[str, Any]:
        return {"positions": dict(self._positions), "batches": self._batches,
                "events": self._events, "fed_events": self._fed,
                "last_run_seconds": self._last_run_seconds}

    # ---------------------------------------------------------------- answers
    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for the query functions of the read-model modules."""
        with self._connection() as conn:
            yield conn

    def status(self) -> Status | None:
        """Live status as of the last committed batch: from memory when this runner holds
        it (safe from any thread), else from the tables."""
        live = self.projections.get(LiveStatusProjection.name)
        if self._loaded and isinstance(live, LiveStatusProjection):
            return live.published
        with self.connect() as conn:
            return read_status(conn)

    def usage(self, start: datetime, end: datetime, *, by: str = "site", period: str = "day",
              as_of: datetime | None = None) -> UsageReport:
        with self.connect() as conn:
            return usage_report(conn, start, end, by=by, period=period, as_of=as_of)

    def state_at(self, at: datetime, site: str | None = None) -> StateAt:
        with self.connect() as conn:
            return state_at(conn, at, site)

    def history(self, user: str, site: str | None = None) -> tuple[HistoryEntry, ...]:
        with self.connect() as conn:
            return user_history(conn, user, site)

    def why_refused(self, user: str, *, at: datetime | None = None,
                    site: str | None = None) -> tuple[RefusalAnswer, ...]:
        with self.connect() as conn:
            return why_refused(conn, user, at=at, site=site)


@contextmanager
def _secure_delete(conn: Connection) -> Iterator[None]:
    """On SQLite, zero the pages of what is dropped meanwhile (PRAGMA secure_delete): the
    file would otherwise keep them, free but readable, until they are reused."""
    if conn.dialect.name != "sqlite":
        yield
        return
    was = int(conn.exec_driver_sql("PRAGMA secure_delete").scalar() or 0)
    conn.exec_driver_sql("PRAGMA secure_delete = ON")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA secure_delete = {was}")


def check_names(names: Iterable[str] | None) -> tuple[str, ...]:
    """Validate read-model names (None: all). Raises UnknownProjectionError."""
    if names is None:
        return tuple(PROJECTIONS)
    chosen = tuple(dict.fromkeys(names))
    unknown = [n for n in chosen if n not in PROJECTIONS]
    if unknown:
        raise UnknownProjectionError(
            f"no read model named {', '.join(map(repr, unknown))}: "
            f"choose from {', '.join(PROJECTIONS)}")
    return chosen


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
