"""The slave's durable state: the offline journal, the seats it holds, and what its offline
rules remember across restarts (SQLite, ``journal.db``).

Every seat event the slave decides while it cannot reach a master is appended here with a
per-site sequence number that only grows (kept in ``meta``, never reused even after the
journal is trimmed), and committed before the caller is answered. On reconnection the
journal is sent in a Sync and trimmed once the master has answered SyncDone.

At rest: user ids, tenants and campaigns are sealed (see :mod:`seatledger.slave.cipher`);
seats are keyed by a keyed hash of the user id. The agent class, the times, the kinds and the
seat numbers are stored in clear. The state directory is made 0700 and the journal's files
0600. A journal written before sealing (schema 1) is converted when first opened, and the
file is vacuumed so that no clear value is left in its free pages or its WAL.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import attrs

from seatledger.slave.cipher import (
    JournalCipher,
    new_key,
    read_key,
    unwrap_key,
    wrap_key,
    write_key,
)
from seatledger.slave.errors import JournalKeyError
from seatledger.slave.policy import Remembered, SeatStatus

EntryKind = Literal["grant", "release"]

SCHEMA = 2

_TABLES = (
    "CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL,"
    " agent_class TEXT NOT NULL, occurred_at REAL NOT NULL, reason TEXT NOT NULL,"
    " who BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS seats (uid BLOB PRIMARY KEY, agent_class TEXT NOT NULL,"
    " seat TEXT NOT NULL, status TEXT NOT NULL, who BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value);"
)


@attrs.frozen
class JournalEntry:
    """One journalled seat event. ``reason`` is set on releases the slave made by itself
    (``site_cut_off``); empty for a user's own log-off."""

    seq: int
    kind: EntryKind
    user: str
    agent_class: str
    tenant: str
    campaign: str
    occurred_at: datetime
    reason: str = ""


@attrs.frozen
class LocalSeat:
    """A seat this site holds: granted by the master, or by the slave while offline."""

    user: str
    agent_class: str
    tenant: str
    campaign: str
    seat: str
    status: SeatStatus = attrs.field(converter=SeatStatus)


class Journal:
    """The journal in ``path``; its key beside it in ``journal.key``.

    ``site_secret`` (the site's TLS private key) lets the journal be opened without its key
    file, and is what the copy of the key kept in the journal is wrapped under.

    Raises:
        JournalKeyError: the journal holds sealed rows and neither the key file nor
            ``site_secret`` opens them.
    """

    def __init__(self, path: Path, *, site_secret: bytes | None = None):
        _private_dir(path.parent)
        _private_file(path)
        self.path = path
        self.key_path = path.with_name(path.stem + ".key")
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            db = self._db
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA secure_delete=ON")
            for suffix in ("-wal", "-shm"):
                _private_file(path.with_name(path.name + suffix), create=False)
            journal_columns = _columns(db, "journal")
            old = "user" in journal_columns
            db.executescript("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value);")
            sealed = bool(journal_columns) and not old and _has_rows(db)
            self._cipher = self._open_key(site_secret, sealed_rows=sealed)
            if old:
                self._convert_schema_1()
            db.executescript(_TABLES)
            self._put_meta("schema", SCHEMA)
            self._put_meta("key_check", self._cipher.check)
            if site_secret is not None:
                self._put_meta("wrapped_key", wrap_key(self._cipher.key, site_secret))
            self._seats = {s.user: s for s in self._read_seats()}
            self._count = int(db.execute("SELECT COUNT(*) FROM journal").fetchone()[0])
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    # --------------------------------------------------------------- the journal
    def grant_offline(self, user: str, agent_class: str, tenant: str, campaign: str,
                      at: datetime, status: SeatStatus) -> LocalSeat:
        """Journal a grant decided offline, and hold its seat (``offline-SEQ``), durably."""
        with self._transaction():
            seq = self._append("grant", user, agent_class, tenant, campaign, at, "")
            seat = LocalSeat(user, agent_class, tenant, campaign, f"offline-{seq}", status)
            self._put_seat(seat)
        self._seats[user] = seat
        self._count += 1
        return seat

    def release_offline(self, user: str, at: datetime, reason: str = "") -> int:
        """Journal the release of ``user``'s seat, and drop it, durably; returns its seq.

        Raises:
            KeyError: no seat is held for ``user``.
        """
        held = self._seats[user]
        with self._transaction():
            seq = self._append("release", user, held.agent_class, held.tenant, held.campaign,
                               at, reason)
            self._delete_seat(user)
        del self._seats[user]
        self._count += 1
        return seq

    def release_all(self, at: datetime, reason: str) -> list[int]:
        """Journal a release of every seat held, with ``reason``, in one transaction."""
        seats = list(self._seats.values())
        with self._transaction():
            seqs = [self._append("release", s.user, s.agent_class, s.tenant, s.campaign, at,
                                 reason) for s in seats]
            self._db.execute("DELETE FROM seats")
        self._seats.clear()
        self._count += len(seqs)
        return seqs

    def pending(self) -> list[JournalEntry]:
        rows = self._db.execute("SELECT seq, kind, agent_class, occurred_at, reason, who"
                                " FROM journal ORDER BY seq").fetchall()
        entries = []
        for seq, kind, agent_class, occurred_at, reason, who in rows:
            user, tenant, campaign = self._open_who(who, _journal_row(seq))
            entries.append(JournalEntry(seq, kind, user, agent_class, tenant, campaign,
                                        datetime.fromtimestamp(occurred_at, UTC), reason))
        return entries

    def count(self) -> int:
        return self._count

    def trim(self, upto_seq: int) -> None:
        """Forget journal entries the master has acknowledged."""
        self._db.execute("DELETE FROM journal WHERE seq <= ?", (upto_seq,))
        self._count = int(self._db.execute("SELECT COUNT(*) FROM journal").fetchone()[0])

    # --------------------------------------------------------------- seats held
    def hold(self, seat: LocalSeat) -> None:
        self._put_seat(seat)
        self._seats[seat.user] = seat

    def drop(self, user: str) -> None:
        self._delete_seat(user)
        self._seats.pop(user, None)

    def seat(self, user: str) -> LocalSeat | None:
        return self._seats.get(user)

    def seats(self) -> dict[str, LocalSeat]:
        return dict(sorted(self._seats.items()))

    # --------------------------------------------------------------- remembered rules
    def remember(self, remembered: Remembered) -> None:
        """Keep what the offline rules must know after a restart."""
        self._put_meta("remembered", json.dumps(
            {"limits": dict(remembered.limits), "failed_rounds": remembered.failed_rounds,
             "outage": remembered.outage, "cut_off": remembered.cut_off}, sort_keys=True))

    def remembered(self) -> Remembered:
        text = self._meta("remembered")
        if not isinstance(text, str):
            return Remembered()
        data = json.loads(text)
        return Remembered({str(c): int(n) for c, n in data["limits"].items()},
                          int(data["failed_rounds"]), bool(data["outage"]),
                          bool(data["cut_off"]))

    # --------------------------------------------------------------- rows
    def _append(self, kind: EntryKind, user: str, agent_class: str, tenant: str, campaign: str,
                at: datetime, reason: str) -> int:
        last = self._meta("last_seq")
        seq = (last if isinstance(last, int) else 0) + 1
        self._put_meta("last_seq", seq)
        self._db.execute("INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?)",
                         (seq, kind, agent_class, at.timestamp(), reason,
                          self._seal_who(user, tenant, campaign, _journal_row(seq))))
        return seq

    def _put_seat(self, seat: LocalSeat) -> None:
        uid = self._cipher.lookup_id(seat.user)
        self._db.execute("INSERT OR REPLACE INTO seats VALUES (?, ?, ?, ?, ?)",
                         (uid, seat.agent_class, seat.seat, str(seat.status),
                          self._seal_who(seat.user, seat.tenant, seat.campaign,
                                         _seat_row(uid))))

    def _delete_seat(self, user: str) -> None:
        self._db.execute("DELETE FROM seats WHERE uid = ?", (self._cipher.lookup_id(user),))

    def _read_seats(self) -> Iterable[LocalSeat]:
        for uid, agent_class, seat, status, who in self._db.execute(
                "SELECT uid, agent_class, seat, status, who FROM seats"):
            user, tenant, campaign = self._open_who(who, _seat_row(uid))
            yield LocalSeat(user, agent_class, tenant, campaign, seat, status)

    def _seal_who(self, user: str, tenant: str, campaign: str, row: bytes) -> bytes:
        return self._cipher.seal(json.dumps([user, tenant, campaign]).encode(), row)

    def _open_who(self, sealed: bytes, row: bytes) -> tuple[str, str, str]:
        user, tenant, campaign = json.loads(self._cipher.open(sealed, row))
        return str(user), str(tenant), str(campaign)

    def _meta(self, key: str) -> object:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _put_meta(self, key: str, value: object) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    # --------------------------------------------------------------- the key
    def _open_key(self, site_secret: bytes | None, *, sealed_rows: bool) -> JournalCipher:
        check = self._meta("key_check")
        key = read_key(self.key_path)
        if key is not None and (check is None or JournalCipher(key).check == check):
            return JournalCipher(key)
        wrapped = self._meta("wrapped_key")
        if isinstance(wrapped, bytes) and site_secret is not None:
            unwrapped = unwrap_key(wrapped, site_secret)
            if unwrapped is not None and JournalCipher(unwrapped).check == check:
                if key is None:
                    write_key(self.key_path, unwrapped)
                return JournalCipher(unwrapped)
        if not sealed_rows:
            # Nothing sealed to lose (a new journal, or one written in clear): any key will do.
            if key is None:
                key = new_key()
                write_key(self.key_path, key)
            return JournalCipher(key)
        raise JournalKeyError(
            f"{self.key_path} is missing or belongs to another journal, and the site's key "
            f"does not open the copy kept in {self.path}: the journal cannot be read")

    def _convert_schema_1(self) -> None:
        """Seal a journal written in clear (schema 1), and leave no clear value in the file."""
        db = self._db
        journal = db.execute("SELECT seq, kind, user, agent_class, tenant, campaign,"
                             " occurred_at FROM journal").fetchall()
        seats = db.execute("SELECT user, agent_class, tenant, campaign, seat, status"
                           " FROM seats").fetchall() if _columns(db, "seats") else []
        last = self._meta("last_seq")
        with self._transaction():
            db.execute("DROP TABLE journal")
            db.execute("DROP TABLE IF EXISTS seats")
            for stmt in _TABLES.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            for seq, kind, user, agent_class, tenant, campaign, occurred_at in journal:
                db.execute("INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?)",
                           (seq, kind, agent_class, occurred_at, "",
                            self._seal_who(user, tenant, campaign, _journal_row(seq))))
            for user, agent_class, tenant, campaign, seat, status in seats:
                self._put_seat(LocalSeat(user, agent_class, tenant, campaign, seat, status))
            self._put_meta("last_seq", last if isinstance(last, int) else 0)
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


class _Transaction:
    """``with``: BEGIN IMMEDIATE ... COMMIT, or ROLLBACK if the body raises."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _journal_row(seq: int) -> bytes:
    return b"journal:%d" % seq


def _seat_row(uid: bytes) -> bytes:
    return b"seat:" + uid


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]


def _has_rows(db: sqlite3.Connection) -> bool:
    tables = [t for t in ("journal", "seats") if _columns(db, t)]
    return any(db.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone() for t in tables)


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)


def _private_file(path: Path, *, create: bool = True) -> None:
    if create:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    if path.exists():
        path.chmod(0o600)


def held_by_class(seats: Mapping[str, LocalSeat]) -> dict[str, int]:
    """How many seats are held per agent class."""
    counts: dict[str, int] = {}
    for s in seats.values():
        counts[s.agent_class] = counts.get(s.agent_class, 0) + 1
    return counts


__all__ = ["SCHEMA", "EntryKind", "Journal", "JournalEntry", "LocalSeat", "held_by_class"]
