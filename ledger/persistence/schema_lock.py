"""One lock for creating tables in PostgreSQL.

``CREATE TABLE IF NOT EXISTS`` (and SQLAlchemy's ``create_all``, which looks first and then
creates) is not safe against a second process doing the same at the same moment: one of them
fails with ``duplicate key value violates unique constraint "pg_type_typname_nsp_index"``.
Two masters started together on a fresh database, or a vendor's import beside its web
server, do exactly that. Every place that creates our tables in PostgreSQL takes this
advisory lock first, so creators queue and the later ones find the tables made: in the
transaction that creates them where there is one, around opening the event store where
eventsourcing creates its tables (and types) in several. (SQLite serialises writers on its
own.)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg

SCHEMA_LOCK_KEY = 0x5EA7_1ED6
"""The advisory-lock key (one for all of seatledger's tables: creation is rare and short)."""

PG_SCHEMA_LOCK = f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})"
"""Held until the end of the transaction that runs it."""


def lock_schema(conn: Any) -> None:
    """Take the schema lock on a SQLAlchemy connection inside its transaction (a no-op on
    any database but PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(PG_SCHEMA_LOCK)


@contextmanager
def holding_schema_lock(env: Mapping[str, str]) -> Iterator[None]:
    """Hold the schema lock (on a session of its own) while eventsourcing opens a store
    described by ``env``, which creates its types and tables in several transactions; a
    no-op for SQLite.

    Raises:
        psycopg.Error: the database cannot be reached (the opener reports it as it reports
            eventsourcing's own failure to connect).
    """
    if env.get("PERSISTENCE_MODULE") != "eventsourcing.postgres":
        yield
        return
    with psycopg.connect(
            host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"], dbname=env["POSTGRES_DBNAME"],
            user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"],
            connect_timeout=int(env.get("POSTGRES_CONNECT_TIMEOUT", "5")),
            autocommit=True) as conn:  # closing it ends the session: the lock goes with it
        conn.execute(f"SELECT pg_advisory_lock({SCHEMA_LOCK_KEY})")
        yield
