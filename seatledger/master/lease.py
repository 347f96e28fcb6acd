"""The leadership lease: which of the masters sharing one PostgreSQL ledger is active.

One row, ``seatledger_lease (id = 1)``, in the ledger's own database:

* ``term`` only grows: every acquisition adds one. Every commit of the active master is
  fenced by it (:meth:`Lease.fence`, run inside the commit's transaction), so a master whose
  term has passed cannot commit, however long it was paused.
* ``holder`` and ``since`` name the active master and when it became active (for operators).
* ``expires_at``: the active renews it every ``renew_seconds``; a master that cannot renew
  before it passes is no longer active, and a standby may take the lease.
* ``backend_pid`` / ``backend_start``: the PostgreSQL session the active renews on. A master
  that dies (killed, crashed) closes its session at once, and a standby that sees the session
  gone takes over without waiting for the expiry. A paused master keeps its session, which
  is why the expiry (not a session lock) is what ends its term.

All times are the database's (``now()``), never a host's clock. Every method blocks (run
them in a worker thread); the fence runs on the recorder's connection, the rest on the
lease's own.
"""

from __future__ import annotations

import logging
import socket
import threading
from contextlib import nullcontext
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs
import psycopg

from ledger import LedgerError
from ledger.persistence.fencing import FencedError
from ledger.persistence.schema_lock import PG_SCHEMA_LOCK
from seatledger.config.settings import CONFIG_NAME, Config, ConfigError

log = logging.getLogger("seatledger.master")

TABLE = "seatledger_lease"

_CREATE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id integer PRIMARY KEY CHECK (id = 1),
    term bigint NOT NULL,
    holder text NOT NULL,
    since timestamptz,
    expires_at timestamptz NOT NULL,
    backend_pid integer,
    backend_start timestamptz
)"""
_SEED = (f"INSERT INTO {TABLE} (id, term, holder, expires_at) "
         "VALUES (1, 0, '', 'epoch') ON CONFLICT (id) DO NOTHING")

_MY_SESSION = ("backend_pid = pg_backend_pid(), backend_start = "
               "(SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid())")

# Taken when it has expired, or when the session its holder renewed on is gone (the holder
# died). Concurrent attempts queue on the row lock and re-check: exactly one wins. (A role
# that may not see another role's sessions in full sees their pid but no backend_start:
# the pid alone is then trusted, never the absence of a start time.)
_ACQUIRE = f"""
UPDATE {TABLE} AS l SET term = l.term + 1, holder = %(holder)s, since = now(),
    expires_at = now() + make_interval(secs => %(seconds)s), {_MY_SESSION}
WHERE l.id = 1 AND (l.expires_at <= now() OR NOT EXISTS (
    SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.backend_pid
    AND (a.backend_start IS NULL OR a.backend_start = l.backend_start)))
RETURNING l.term, l.holder, l.since, l.expires_at"""

_RENEW = f"""
UPDATE {TABLE} SET expires_at = now() + make_interval(secs => %(seconds)s), {_MY_SESSION}
WHERE id = 1 AND term = %(term)s AND holder = %(holder)s AND expires_at > now()
RETURNING term"""

_RELEASE = (f"UPDATE {TABLE} SET expires_at = now() "
            "WHERE id = 1 AND term = %(term)s AND holder = %(holder)s")

_READ = f"SELECT term, holder, since, expires_at, expires_at > now() AS live FROM {TABLE} WHERE id = 1"

# In the commit's transaction: a share lock on the row, so that a takeover (an UPDATE of
# the row) waits for this commit, and this commit, if it comes second, sees the new term.
_FENCE = (f"SELECT term FROM {TABLE} WHERE id = 1 AND term = %(term)s AND holder = %(holder)s "
          "AND expires_at > now() FOR SHARE")


@attrs.frozen
class HaSettings:
    """``[ha]`` in seatledger.toml: the lease's timing, and this master's name in it."""

    lease_seconds: float = 5.0
    """How long a renewal holds the lease; a dead or paused active is replaced after it."""
    renew_seconds: float = 1.0
    """How often the active renews (well inside ``lease_seconds``)."""
    poll_seconds: float = 0.25
    """How often a standby looks at the lease."""
    name: str = ""
    """This master's name in the lease (default: host name and listen address)."""

    def holder(self, listen: str, pid: int) -> str:
        """The lease's ``holder`` for this process: its name and pid (a restarted master
        is a new holder)."""
        return f"{self.name or socket.gethostname() + ' ' + listen} (pid {pid})"


def ha_settings(config: Config) -> HaSettings:
    """The ``[ha]`` table's settings, with their defaults.

    Raises:
        ConfigError: a value has the wrong type, or renewal is not well inside the lease.
    """
    table = config.raw.get("ha", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{CONFIG_NAME}: [ha] must be a table")
    values: dict[str, Any] = {}
    for field in attrs.fields(HaSettings):
        if field.name not in table:
            continue
        value = table[field.name]
        kind = str if field.name == "name" else (int, float)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigError(f"{CONFIG_NAME}: [ha] {field.name} has the wrong type ({value!r})")
        values[field.name] = value if field.name == "name" else float(value)
    settings = HaSettings(**values)
    if not 0 < settings.renew_seconds * 2 <= settings.lease_seconds or settings.poll_seconds <= 0:
        raise ConfigError(f"{CONFIG_NAME}: [ha] renew_seconds must be positive and at most "
                          "half of lease_seconds, and poll_seconds positive")
    return settings


class LeaseError(LedgerError):
    """The lease cannot be read or written (PostgreSQL unreachable, or refusing)."""


class SteppedDownError(LedgerError):
    """This master lost its lease while a command waited to be committed: nothing of it
    was recorded."""


@attrs.frozen
class LeaseState:
    """The lease row as read: who is active, since when, under which term."""

    term: int
    holder: str
    since: datetime | None
    expires_at: datetime | None
    live: bool
    """Whether it had not expired when read (the holder is active, if it still renews)."""

    def describe(self) -> str:
        """One line for operators: ``HOLDER since TIME (term N)``."""
        if not self.holder:
            return "none yet"
        since = self.since.isoformat(timespec="seconds") if self.since else "?"
        text = f"{self.holder} since {since} (term {self.term})"
        return text if self.live else f"none (the lease of {text} has expired)"

    def as_dict(self) -> dict[str, Any]:
        return {"holder": self.holder or None, "term": self.term,
                "since": self.since.isoformat() if self.since else None,
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "live": self.live}


def connection_url(store_url: str) -> str:
    """The store URL as libpq takes it (no ``+driver`` in the scheme)."""
    parts = urlsplit(store_url)
    return urlunsplit(parts._replace(scheme=parts.scheme.split("+")[0]))


def is_postgres(store_url: str) -> bool:
    return urlsplit(store_url).scheme.split("+")[0] in ("postgresql", "postgres")


class Lease:
    """One master's hold on (or wait for) the lease. See the module docstring."""

    def __init__(self, store_url: str, holder: str, *, lease_seconds: float,
                 connect_timeout: float = 3.0):
        self.url = connection_url(store_url)
        self.holder = holder
        self.lease_seconds = lease_seconds
        self.connect_timeout = connect_timeout
        self.term: int | None = None
        """Our term while we hold the lease; None while we do not."""
        self._conn: psycopg.Connection[Any] | None = None
        self._guard = threading.Lock()

    # ------------------------------------------------------------------ connection
    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            # Statements are short: one that hangs (a lost database host) must not hold
            # the renewal past the lease's expiry unnoticed.
            timeout_ms = int(max(1.0, self.lease_seconds / 2) * 1000)
            self._conn = psycopg.connect(self.url, autocommit=True,
                                         connect_timeout=max(1, int(self.connect_timeout)),
                                         options=f"-c statement_timeout={timeout_ms}")
        return self._conn

    def _run(self, sql: str, *more: str, params: dict[str, Any] | None = None) -> Any:
        """Execute a statement on the lease's connection (with ``more``, all of them in one
        transaction); the last one's first row, or None.

        Raises:
            LeaseError: the database cannot be reached or refused the statement.
        """
        with self._guard:
            try:
                conn = self._connection()
                with conn.transaction() if more else nullcontext(), conn.cursor() as cur:
                    for statement in (sql, *more):
                        cur.execute(statement, params)
                    return cur.fetchone() if cur.description else None
            except psycopg.Error as e:
                self._drop_connection()
                raise LeaseError(f"the lease in PostgreSQL cannot be used: {_first_line(e)}"
                                 ) from e

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass  # already broken: there is nothing left to close
            self._conn = None

    def close(self) -> None:
        """Close the lease's connection (a master stepping down ends its session too)."""
        with self._guard:
            self._drop_connection()

    # ------------------------------------------------------------------ the row
    def prepare(self) -> None:
        """Create the lease row if the database has none yet (in one transaction under the
        schema lock: masters started together on a fresh database queue here)."""
        self._run(PG_SCHEMA_LOCK, _CREATE, _SEED)

    def read(self) -> LeaseState | None:
        row = self._run(_READ)
        return None if row is None else LeaseState(int(row[0]), row[1], row[2], row[3],
                                                   bool(row[4]))

    def try_acquire(self) -> LeaseState | None:
        """Take the lease if it is free (expired, or its holder's session is gone); our new
        state, or None if another master holds it."""
        row = self._run(_ACQUIRE,
                        params={"holder": self.holder, "seconds": self.lease_seconds})
        if row is None:
            return None
        self.term = int(row[0])
        return LeaseState(int(row[0]), row[1], row[2], row[3], True)

    def renew(self) -> bool:
        """Extend our lease; False if it is no longer ours (it expired or was taken).

        Raises:
            LeaseError: the database cannot be reached (the caller decides when to give up).
        """
        if self.term is None:
            return False
        row = self._run(_RENEW, params={"holder": self.holder, "term": self.term,
                                        "seconds": self.lease_seconds})
        if row is None:
            self.term = None
            return False
        return True

    def release(self) -> None:
        """Give the lease up now (a clean stop): a standby may take it at once."""
        term, self.term = self.term, None
        if term is not None:
            self._run(_RELEASE, params={"holder": self.holder, "term": term})

    def step_down(self) -> None:
        """Forget our term and end our session, without touching the row (it may be
        another master's by now)."""
        self.term = None
        self.close()

    # ------------------------------------------------------------------ fencing
    def fence(self, cursor: Any) -> None:
        """Refuse the commit running on ``cursor`` unless our term still holds (see
        :mod:`ledger.persistence.fencing`).

        Raises:
            FencedError: the lease is no longer ours.
        """
        term = self.term
        if term is None:
            raise FencedError("this master holds no lease: it may not commit")
        cursor.execute(_FENCE, {"term": term, "holder": self.holder})
        if cursor.fetchone() is None:
            raise FencedError(f"the lease of term {term} is no longer ours: another master "
                              "is active (or the lease expired)")


def read_lease(store_url: str) -> LeaseState | None:
    """The lease row of the PostgreSQL store at ``store_url``; None if no master ever ran
    there with a lease.

    Raises:
        LeaseError: the database cannot be reached.
    """
    lease = Lease(store_url, "", lease_seconds=5.0)
    try:
        return lease.read()
    except LeaseError as e:
        if isinstance(e.__cause__, psycopg.errors.UndefinedTable):
            return None
        raise
    finally:
        lease.close()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


__all__ = ["TABLE", "HaSettings", "Lease", "LeaseError", "LeaseState", "SteppedDownError", "connection_url", "ha_settings",
           "is_postgres", "read_lease"]
