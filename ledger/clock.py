"""Clocks. Domain code never reads the wall clock itself: it is handed one of these."""

from __future__ import annotations

from collections.abc import Callable
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

    ``read(last_recorded)`` returns ``(recorded, step)``; ``step`` is ``(wall, expected)`` when
    the wall clock stepped by more than :data:`STEP_TOLERANCE` (back, or forward beyond what
    elapsed), else None.

    Without a monotonic source (a one-shot command), recorded time is the later of the last
    recorded time and the wall clock, and a step is a wall reading behind the previous one.

    With a monotonic source (a running master: :meth:`follow_monotonic`), recorded time
    advances with the monotonic clock from the last recorded time, whatever the wall clock
    does: setting the wall clock back neither freezes recorded time nor extends a deadline.
    A step of the wall clock is reported once, when it is noticed.
    """

    def __init__(self, clock: Clock, monotonic: Callable[[], float] | None = None):
        self.clock = clock
        self._last_wall: datetime | None = None
        self._monotonic = monotonic
        self._anchor: tuple[datetime, float] | None = None  # (recorded, monotonic) at anchor
        self._last_mono: float | None = None

    def follow_monotonic(self, monotonic: Callable[[], float]) -> None:
        """From now on, advance recorded time with ``monotonic`` (seconds, any origin)."""
        self._monotonic = monotonic
        self._anchor = None

    def read(self, last_recorded: datetime | None, *,
             peek: bool = False) -> tuple[datetime, tuple[datetime, datetime] | None]:
        """``peek``: only look (what time is it?), do not consume a step."""
        wall = self.clock.now()
        if peek:
            saved = self._last_wall, self._last_mono, self._anchor
            try:
                return self.read(last_recorded)
            finally:
                self._last_wall, self._last_mono, self._anchor = saved
        if self._monotonic is None:
            return self._read_wall(wall, last_recorded)
        mono = self._monotonic()
        step = None
        if self._anchor is None:
            start = wall
            if last_recorded is not None and wall < last_recorded - STEP_TOLERANCE:
                step = (wall, last_recorded)
            if last_recorded is not None and wall < last_recorded:
                start = last_recorded
            self._anchor = (start, mono)
        elif self._last_wall is not None and self._last_mono is not None:
            expected = self._last_wall + timedelta(seconds=mono - self._last_mono)
            if abs(wall - expected) > STEP_TOLERANCE:
                step = (wall, expected)
        self._last_wall, self._last_mono = wall, mono
        recorded = self._anchor[0] + timedelta(seconds=mono - self._anchor[1])
        if last_recorded is not None and recorded < last_recorded:
            recorded = last_recorded
        return recorded, step

    def _read_wall(self, wall: datetime,
                   last_recorded: datetime | None) -> tuple[datetime, tuple[datetime, datetime] | None]:
        previous = self._last_wall if self._last_wall is not None else last_recorded
        self._last_wall = wall
        step = None
        if previous is not None and wall < previous - STEP_TOLERANCE:
            step = (wall, previous)
        if last_recorded is not None and wall < last_recorded:
            return last_recorded, step
        return wall, step
