"""Clocks. Domain code never reads the wall clock itself: it is handed one of these."""

from __future__ import annotations

import threading
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
        # A master's writer thread and its event loop both read the time.
        self._lock = threading.Lock()

    def follow_monotonic(self, monotonic: Callable[[], float],
                         wall: Callable[[], datetime] | None = None) -> None:
        """From now on, advance recorded time with ``monotonic`` (seconds, any origin), and
        read the wall clock live from ``wall`` if given (each reading pairs the two)."""
        with self._lock:
            self._monotonic = monotonic
            if wall is not None:
                self.clock = _CallableClock(wall)
            self._anchor = None

    def read(self, last_recorded: datetime | None, *,
             peek: bool = False) -> tuple[datetime, tuple[datetime, datetime] | None]:
        """``peek``: only look (what time is it?); a step is reported only to a real read."""
        with self._lock:
            if self._monotonic is None:
                return self._read_wall(self.clock.now(), last_recorded, peek)
            return self._read_monotonic(self.clock.now(), self._monotonic(), last_recorded,
                                        peek)

    def _read_monotonic(self, wall: datetime, mono: float, last_recorded: datetime | None,
                        peek: bool) -> tuple[datetime, tuple[datetime, datetime] | None]:
        step = None
        anchor = self._anchor
        if anchor is None:
            start = wall
            if last_recorded is not None and wall < last_recorded - STEP_TOLERANCE:
                step = (wall, last_recorded)
            if last_recorded is not None and wall < last_recorded:
                start = last_recorded
            anchor = (start, mono)
        elif self._last_wall is not None and self._last_mono is not None:
            expected = self._last_wall + timedelta(seconds=mono - self._last_mono)
            if abs(wall - expected) > STEP_TOLERANCE:
                step = (wall, expected)
        recorded = anchor[0] + timedelta(seconds=mono - anchor[1])
        if last_recorded is not None and recorded < last_recorded:
            recorded = last_recorded
        if not peek:
            self._anchor = anchor
            self._last_wall, self._last_mono = wall, mono
        return recorded, step

    def _read_wall(self, wall: datetime, last_recorded: datetime | None,
                   peek: bool = False) -> tuple[datetime, tuple[datetime, datetime] | None]:
        previous = self._last_wall if self._last_wall is not None else last_recorded
        if not peek:
            self._last_wall = wall
        step = None
        if previous is not None and wall < previous - STEP_TOLERANCE:
            step = (wall, previous)
        if last_recorded is not None and wall < last_recorded:
            return last_recorded, step
        return wall, step


class DictatedTime(TimeKeeper):
    """Recorded time as another process dictates it: a ledger writer process is told, with
    each batch, the time its master read (and any wall-clock step it noticed), so that one
    clock - the master's, trio's MockClock in tests - drives both."""

    def __init__(self) -> None:
        super().__init__(ManualClock())
        self._given: tuple[datetime, tuple[datetime, datetime] | None] | None = None

    def give(self, recorded: datetime, step: tuple[datetime, datetime] | None) -> None:
        """The time of the next batch, and the step to record with it (reported once)."""
        with self._lock:
            self._given = (recorded, step)

    def read(self, last_recorded: datetime | None, *,
             peek: bool = False) -> tuple[datetime, tuple[datetime, datetime] | None]:
        with self._lock:
            if self._given is None:
                return self._read_wall(self.clock.now(), last_recorded, True)
            recorded, step = self._given
            if last_recorded is not None and recorded < last_recorded:
                recorded = last_recorded
            if not peek:
                self._given = (recorded, None)
            return recorded, step


class _CallableClock:
    def __init__(self, now: Callable[[], datetime]):
        self._now = now

    def now(self) -> datetime:
        return self._now()
