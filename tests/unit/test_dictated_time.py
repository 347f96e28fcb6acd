"""A writer process records the time its master dictates (ledger.clock.DictatedTime)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ledger.clock import DictatedTime

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_the_given_time_is_recorded_and_a_step_reported_once() -> None:
    time = DictatedTime()
    step = (T0 - timedelta(hours=1), T0)
    time.give(T0, step)
    assert time.read(None, peek=True) == (T0, step)  # a peek does not use up the step
    assert time.read(None) == (T0, step)
    assert time.read(None) == (T0, None)


def test_recorded_time_never_runs_backwards() -> None:
    time = DictatedTime()
    time.give(T0, None)
    later = T0 + timedelta(seconds=5)
    assert time.read(later) == (later, None)
    time.give(T0 + timedelta(seconds=9), None)
    assert time.read(later) == (T0 + timedelta(seconds=9), None)
