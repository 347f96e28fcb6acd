"""Our recorders against eventsourcing's own recorder contract.

``eventsourcing.tests.persistence.ApplicationRecorderTestCase`` is the suite the library runs
against each of its own recorders: inserts and selects, notification paging by start, stop,
limit and topic, record conflicts as IntegrityError, and concurrent writers that must not
conflict. Our compact SQLite recorder (interned originators and topics, in-transaction
sealing) replaces eventsourcing's SQLite schema, so it must keep that contract; our sealed
PostgreSQL recorder runs it too, on the real server.
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore
from eventsourcing.tests.persistence import ApplicationRecorderTestCase

from ledger.persistence.store import (
    CompactSQLiteRecorder,
    SealedPostgresRecorder,
    persistence_env,
)

PG_URL_VARIABLE = "SEATLEDGER_TEST_PG_URL"


class _ClosesItsRecorders:
    """Closes the recorders a test made once the threads it started have ended: the
    concurrency tests stop their reader threads without joining them, and closing a
    connection under a running reader crashes the SQLite module."""

    recorders: list[Any]

    def track_recorders(self, test: Any) -> None:
        self.recorders = []
        self._threads_before = set(threading.enumerate())
        test.addCleanup(self._close_recorders)

    def _close_recorders(self) -> None:
        # Connection pools run daemon threads until closed; the test's readers are not.
        started = set(threading.enumerate()) - self._threads_before
        for thread in (t for t in started if not t.daemon):
            thread.join(timeout=10)
            if thread.is_alive():
                raise AssertionError(f"thread {thread.name} still running after the test")
        for recorder in self.recorders:
            recorder.datastore.close()


class TestCompactSQLiteRecorder(_ClosesItsRecorders,
                                ApplicationRecorderTestCase[CompactSQLiteRecorder]):
    """The contract on an SQLite file, as the ledger opens it (a fresh file per test)."""

    def setUp(self) -> None:
        super().setUp()
        folder = tempfile.TemporaryDirectory(prefix="seatledger-contract-")
        self.addCleanup(folder.cleanup)
        self.db_name = os.path.join(folder.name, "ledger.db")
        self.track_recorders(self)

    def create_recorder(self) -> CompactSQLiteRecorder:
        # The concurrency tests write from ten threads at once: one connection each.
        datastore = SQLiteDatastore(db_name=self.db_name, lock_timeout=10, pool_size=20)
        recorder = CompactSQLiteRecorder(datastore)
        recorder.create_table()
        self.recorders.append(recorder)
        return recorder


class TestSealedPostgresRecorder(_ClosesItsRecorders,
                                 ApplicationRecorderTestCase[SealedPostgresRecorder]):
    """The contract on the real PostgreSQL server, in a fresh database per test (dropped
    afterwards), as the ledger's own store tests do."""

    def setUp(self) -> None:
        super().setUp()
        server = os.environ.get(PG_URL_VARIABLE)
        if not server:
            self.fail(f"{PG_URL_VARIABLE} is not set: the PostgreSQL recorder must be "
                      "checked against a real server")
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        self.addCleanup(self._drop_database, server, name)
        self.env = persistence_env(f"{server.rsplit('/', 1)[0]}/{name}")
        self.track_recorders(self)

    @staticmethod
    def _drop_database(server: str, name: str) -> None:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def create_recorder(self) -> SealedPostgresRecorder:
        env = self.env
        # The concurrency tests write from ten threads at once: one connection each.
        datastore = PostgresDatastore(
            dbname=env["POSTGRES_DBNAME"], host=env["POSTGRES_HOST"],
            port=env["POSTGRES_PORT"], user=env["POSTGRES_USER"],
            password=env["POSTGRES_PASSWORD"], pool_size=20)
        recorder = SealedPostgresRecorder(datastore)
        recorder.create_table()
        self.recorders.append(recorder)
        return recorder


# The abstract base must not be collected on its own.
del ApplicationRecorderTestCase
