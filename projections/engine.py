"""The SQLAlchemy side of the views: where they live, an engine on it, and portable upserts."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from sqlalchemy import Connection, Engine, Table, create_engine, event, make_url
from sqlalchemy.dialects import postgresql, sqlite

from .errors import ProjectionError, ViewStoreError

SQLITE_BUSY_MS = 10_000
SQLITE_CACHE_KIB = 64 * 1024  # the replay rewrites the same hot pages batch after batch
SQLITE_CHECKPOINT_PAGES = 10_000
VIEWS_SCHEMA = "seatledger_views"
_VIEWS_SEARCH_PATH = f"-csearch_path={VIEWS_SCHEMA}"


def views_url(store_url: str) -> str:
    """Where the read models of the store at ``store_url`` live: beside the store, never in
    it, so that the follower writing them never takes the store's write lock (which would
    stall the master's commits).

    * SQLite: a file of their own next to the store's, named after it (``ledger.db`` ->
      ``ledger.views.db``), created owner-only (0600) by :func:`make_engine`;
    * PostgreSQL: the schema ``seatledger_views`` of the same database. The URL's
      ``options`` put it alone on the search path, so every table and every statement of
      the views lands there (any PostgreSQL client given this URL sees the views).

    Raises ProjectionError for a URL the views cannot use.
    """
    parts = urlsplit(store_url)
    scheme = parts.scheme.split("+")[0]
    if scheme == "sqlite":
        # The file as the store opens it (ledger.persistence.store: the URL's path).
        path = "/" + unquote(parts.path).lstrip("/")
        folder, _, name = path.rpartition("/")
        stem, dot, suffix = name.rpartition(".")
        if not name:
            raise ProjectionError(f"bad store URL {store_url!r}: no file name")
        views = f"{stem}.views.{suffix}" if dot and stem else f"{name}.views"
        return f"sqlite:///{folder}/{views}"
    if scheme in ("postgresql", "postgres"):
        query = dict(parse_qsl(parts.query))
        query["options"] = " ".join(filter(None, (query.get("options"), _VIEWS_SEARCH_PATH)))
        return urlunsplit(parts._replace(query=urlencode(query)))
    return sqlalchemy_url(store_url)  # raises ProjectionError


def views_schema(url: str) -> str | None:
    """The PostgreSQL schema a :func:`views_url` puts the views in (None for SQLite, or a
    URL that names no schema of ours): the runner creates it before its tables."""
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        return None
    options = dict(parse_qsl(parts.query)).get("options", "")
    return VIEWS_SCHEMA if _VIEWS_SEARCH_PATH in options.split() else None


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
    """An engine on the views' database (:func:`views_url`).

    An SQLite file is created owner-only (0600) if missing, as the labels in it are the
    data directory's (SQLite gives its ``-wal`` and ``-shm`` the file's mode). It runs in
    WAL mode, so that readers never wait for the runner, with ``synchronous=NORMAL``: a
    commit is atomic and ordered, and a power cut can lose at most the last few view
    transactions, which the runner then simply re-applies from the tracked position.
    """
    url = sqlalchemy_url(store_url)
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and ":memory:" not in path and not os.path.exists(path):
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_MS / 1000})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")  # kept in the file: once it is set
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
            # Checkpoint the WAL less often than the default 1000 pages: the replay
            # rewrites the same pages batch after batch, and each checkpoint copies them.
            cursor.execute(f"PRAGMA wal_autocheckpoint = {SQLITE_CHECKPOINT_PAGES}")
            cursor.close()
            # Transactions are begun below, not implicitly by the driver.
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # Another runner (a rebuild from the command line) may write the same file. A
            # deferred transaction that reads and then writes can find its snapshot stale
            # (SQLITE_BUSY_SNAPSHOT, which no busy timeout retries); taking the write lock
            # up front waits instead.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_SQL: dict[tuple[str, str, str, tuple[str, ...]], str] = {}


def _placeholder(conn: Connection) -> str:
    return "?" if conn.dialect.name == "sqlite" else "%s"


def write_rows(conn: Connection, table: Table, rows: Sequence[Sequence[Any]], *,
               mode: str = "insert", increment: Sequence[str] = ()) -> None:
    """Bulk write of plain tuples in the table's column order, straight to the driver.

    ``mode`` is ``insert`` or ``upsert`` (replace the non-key columns of an existing row,
    adding the ``increment`` columns instead). The replay writes hundreds of thousands of
    rows; SQLAlchemy's per-row parameter processing would cost more than the database does,
    so these statements are built once as text, in the syntax SQLite and PostgreSQL share.
    """
    if not rows:
        return
    key = (conn.dialect.name, table.name, mode, tuple(increment))
    sql = _SQL.get(key)
    if sql is None:
        names = [c.name for c in table.columns]
        mark = _placeholder(conn)
        sql = (f"INSERT INTO {_quote(table.name)} ({', '.join(map(_quote, names))}) "
               f"VALUES ({', '.join(mark for _ in names)})")
        if mode == "upsert":
            keys = [c.name for c in table.primary_key.columns]
            sets = ", ".join(
                f"{_quote(n)} = {_quote(table.name)}.{_quote(n)} + excluded.{_quote(n)}"
                if n in increment else f"{_quote(n)} = excluded.{_quote(n)}"
                for n in names if n not in keys)
            sql += f" ON CONFLICT ({', '.join(map(_quote, keys))}) DO UPDATE SET {sets}"
        elif mode != "insert":
            raise ValueError(f"unknown write mode {mode!r}")
        _SQL[key] = sql
    _executemany(conn, sql, rows)


def execute_many(conn: Connection, template: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run ``template`` (``?`` placeholders, quoted names) once per row, straight to the
    driver. Only for fixed statement text written in this package."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        template = template.replace("?", "%s")
    _executemany(conn, template, rows)


def _executemany(conn: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    # The DB-API connection of the caller's SQLAlchemy transaction: same transaction.
    cursor = conn.connection.cursor()
    try:
        cursor.executemany(sql, rows)
    except conn.dialect.loaded_dbapi.Error as e:
        raise ViewStoreError(f"the views could not be written: {e}") from e
    finally:
        cursor.close()


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
