"""The slave's durable state: the offline journal and the seats it holds (SQLite).

Every seat event the slave decides while it cannot reach a master is appended here with a
per-site sequence number that only grows (kept in ``meta``, never reused even after the
journal is trimmed), and committed before the caller is answered. On reconnection the
journal is sent in a Sync and trimmed once the master has answered SyncDone.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import attrs

EntryKind = Literal["grant", "release"]


@attrs.frozen
class JournalEntry:
    seq: int
    kind: EntryKind
    user: str
    agent_class: str
    tenant: str
    campaign: str
    occurred_at: datetime


@attrs.frozen
class HeldSeat:
    user: str
    agent_class: str
    tenant: str
    campaign: str
    seat: str
    status: str


class Journal:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(
            "CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL,"
            " user TEXT NOT NULL, agent_class TEXT NOT NULL, tenant TEXT NOT NULL,"
            " campaign TEXT NOT NULL, occurred_at REAL NOT NULL);"
            "CREATE TABLE IF NOT EXISTS seats (user TEXT PRIMARY KEY, agent_class TEXT NOT NULL,"
            " tenant TEXT NOT NULL, campaign TEXT NOT NULL, seat TEXT NOT NULL,"
            " status TEXT NOT NULL);"
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
        )

    def close(self) -> None:
        self._db.close()

    # --------------------------------------------------------------- the journal
    def append(self, kind: EntryKind, user: str, agent_class: str, tenant: str, campaign: str,
               at: datetime, seat: HeldSeat | None = None) -> int:
        """Journal one event (and the seat change it makes) durably; returns its seq."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
            seq = (row[0] if row else 0) + 1
            db.execute("INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (seq,))
            db.execute("INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (seq, kind, user, agent_class, tenant, campaign, at.timestamp()))
            if kind == "grant" and seat is not None:
                self._put_seat(seat)
            elif kind == "release":
                db.execute("DELETE FROM seats WHERE user = ?", (user,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return seq

    def pending(self) -> list[JournalEntry]:
        rows = self._db.execute("SELECT * FROM journal ORDER BY seq").fetchall()
        return [JournalEntry(r[0], r[1], r[2], r[3], r[4], r[5],
                             datetime.fromtimestamp(r[6], UTC)) for r in rows]

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM journal").fetchone()[0])

    def trim(self, upto_seq: int) -> None:
        """Forget journal entries the master has acknowledged."""
        self._db.execute("DELETE FROM journal WHERE seq <= ?", (upto_seq,))

    # --------------------------------------------------------------- seats held
    def _put_seat(self, seat: HeldSeat) -> None:
        self._db.execute("INSERT OR REPLACE INTO seats VALUES (?, ?, ?, ?, ?, ?)",
                         (seat.user, seat.agent_class, seat.tenant, seat.campaign, seat.seat,
                          seat.status))

    def hold(self, seat: HeldSeat) -> None:
        self._put_seat(seat)

    def drop(self, user: str) -> None:
        self._db.execute("DELETE FROM seats WHERE user = ?", (user,))

    def seats(self) -> dict[str, HeldSeat]:
        rows = self._db.execute("SELECT * FROM seats ORDER BY user").fetchall()
        return {r[0]: HeldSeat(*r) for r in rows}
