"""The tracked position of each read model: the last notification id its tables include."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from .errors import ConcurrentRunnerError
from .schema import tracking
from .timestamps import maybe_from_us


def read_positions(conn: Connection) -> dict[str, int]:
    """Read model name -> position (absent: never run)."""
    return {r[0]: r[1] for r in conn.execute(select(tracking.c.name, tracking.c.position))}


def read_marks(conn: Connection) -> dict[str, tuple[int, int | None]]:
    """Read model name -> (position, record time in microseconds of the event there)."""
    return {r[0]: (r[1], r[2]) for r in conn.execute(
        select(tracking.c.name, tracking.c.position, tracking.c.event_us))}


def read_schemas(conn: Connection) -> dict[str, str]:
    """Read model name -> fingerprint of the tables its position describes."""
    return {r[0]: r[1] for r in conn.execute(select(tracking.c.name, tracking.c.schema))}


def read_event_time(conn: Connection, name: str) -> datetime | None:
    """Record time of the last event the read model has applied, if any."""
    us = conn.execute(select(tracking.c.event_us).where(tracking.c.name == name)).scalar()
    return maybe_from_us(us)


def start(conn: Connection, name: str, schema: str) -> None:
    """Track a read model from zero (its tables must be empty)."""
    conn.execute(insert(tracking).values(name=name, position=0, event_us=None, schema=schema))


def forget(conn: Connection, name: str) -> None:
    conn.execute(tracking.delete().where(tracking.c.name == name))


def advance(conn: Connection, name: str, old: int, new: int, event_us: int | None) -> None:
    """Move ``name`` from ``old`` to ``new`` in the caller's transaction.

    Raises ConcurrentRunnerError if the stored position is not ``old`` (another runner got
    there first): the caller's transaction must then roll back.
    """
    values: dict[str, int] = {"position": new}
    if event_us is not None:
        values["event_us"] = event_us
    result = conn.execute(
        update(tracking).where((tracking.c.name == name) & (tracking.c.position == old))
        .values(**values))
    if result.rowcount != 1:
        raise ConcurrentRunnerError(
            f"read model {name!r} was moved past {old} by another runner; "
            "this runner reloads and carries on from the stored position")
