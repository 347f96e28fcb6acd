"""The SQLAlchemy side of the views: an engine on the store's database, and portable upserts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite

from .errors import ProjectionError

SQLITE_BUSY_MS = 10_000


def sqlalchemy_url(store_url: str) -> str:
    """The SQLAlchemy URL for a store URL (``postgresql://`` gets the psycopg 3 driver).

    Raises ProjectionError for a scheme the views cannot use.
    """
    scheme, sep, rest = store_url.partition("://")
    base = scheme.split("+")[0]
    if base == "sqlite":
        return store_url
    if base in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    raise ProjectionError(
        f"unsupported store URL scheme {urlsplit(store_url).scheme!r} for the views: "
        "use sqlite:/// or postgresql://")


def make_engine(store_url: str) -> Engine:
    """An engine for the views in the store's database.

    SQLite runs in WAL mode (the event store sets it), with ``synchronous=NORMAL``: a commit
    is atomic and ordered, and a power cut can lose at most the last few view transactions,
    which the runner then simply re-applies from the tracked position.
    """
    url = sqlalchemy_url(store_url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_MS / 1000})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def upsert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]],
           *, increment: Sequence[str] = ()) -> None:
    """Insert ``rows``, replacing the non-key columns of rows whose primary key exists.

    Columns named in ``increment`` are added to the stored value instead of replacing it.
    """
    if not rows:
        return
    name = conn.dialect.name
    if name == "sqlite":
        stmt: Any = sqlite.insert(table)
    elif name == "postgresql":
        stmt = postgresql.insert(table)
    else:  # pragma: no cover - make_engine only builds the two
        raise ProjectionError(f"no upsert for database {name!r}")
    keys = [c.name for c in table.primary_key.columns]
    values = {
        c.name: (table.c[c.name] + stmt.excluded[c.name]) if c.name in increment
        else stmt.excluded[c.name]
        for c in table.columns if c.name not in keys
    }
    conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=values), list(rows))
