"""Clocks. Domain code never reads the wall clock itself: it is handed one of these."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

STEP_TOLERANCE = timedelta(seconds=1)


class Clock(Protocol):
    def now(self) -> datetime:
        """The current wall-clock time, timezone-aware UTC."""
        ...


class SystemClock:
    """The machine's wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to: tests and the demo's virtual time."""

    def __init__(self, start: datetime | None = None):
        self._now = start or datetime(2026, 1, 5, 8, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float = 0, **kwargs: float) -> datetime:
        self._now += timedelta(seconds=seconds, **kwargs)
        return self._now

    def set(self, when: datetime) -> None:
        """Set the reading, backwards too (to test clock steps)."""
        self._now = when


class TimeKeeper:
    """Turns wall-clock readings into the ledger's recorded time, which never runs backwards.

    ``read(last_recorded)`` returns ``(recorded, step)``: recorded is the later of the last
    recorded time and the wall clock; step is ``(wall, previous_wall)`` when the wall clock
    went back by more than a second since the previous reading, else None.
    """

    def __init__(self, clock: Clock):
        self.clock = clock
        self._last_wall: datetime | None = None

    def read(self, last_recorded: datetime | None) -> tuple[datetime, tuple[datetime, datetime] | None]:
        wall = self.clock.now()
        previous = self._last_wall if self._last_wall is not None else last_recorded
        self._last_wall = wall
        step = None
        if previous is not None and wall < previous - STEP_TOLERANCE:
            step = (wall, previous)
        if last_recorded is not None and wall < last_recorded:
            return last_recorded, step
        return wall, step
