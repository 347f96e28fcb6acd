"""How the views store instants: whole microseconds since the Unix epoch, UTC.

Integers keep SQLite and PostgreSQL identical, compare exactly, and cost no type conversion
per row (the replay writes hundreds of thousands of them).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

US_PER_SECOND = 1_000_000
US_PER_HOUR = 3600 * US_PER_SECOND
US_PER_DAY = 24 * US_PER_HOUR
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def to_us(when: datetime) -> int:
    """An aware datetime as epoch microseconds (naive input is taken to be UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH) // _ONE_US


def from_us(us: int) -> datetime:
    """Epoch microseconds as an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=us)


def maybe_from_us(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)


def maybe_to_us(when: datetime | None) -> int | None:
    return None if when is None else to_us(when)
