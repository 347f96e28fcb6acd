"""The analytics replay against a minute-by-minute reference model (no I/O).

Random grants and releases on whole minutes around a month's end, on a licence ACD=2,
PRED=3 capped at PRED+ACD=4: the month rows must equal what counting every minute gives,
and stopping the replay at any record, storing the state as JSON and carrying on from it
must give the same rows as one uninterrupted replay.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.domain.licence import Licence
from seatledger.vendor.analytics import (
    _Customer,
    _Replay,
    _Sink,
    month_index,
    month_label,
    month_range,
    parse_month,
)

START = datetime(2026, 3, 30, 20, tzinfo=UTC)  # 52 hours before 2026-04-01 00:00 ... and after
LIMITS = {"PRED": 3, "ACD": 2}
TOTAL = 4
ID = uuid4()


@attrs.frozen
class FakeRecord:
    record_id: int
    day: str
    e: Any

    def event(self) -> Any:
        return self.e


def _event(cls: Any, t: datetime, **fields: Any) -> Any:
    return cls(originator_id=ID, originator_version=1, timestamp=t, occurred_at=t, **fields)


def history(ops: list[tuple[int, bool, str]]) -> list[Any]:
    """Events for (minute, grant?, class) steps; a release only when a seat is held."""
    t0 = START
    events = [_event(Licence.LicenceAmended, t0, limits=LIMITS, total_pred_acd=TOTAL,
                     expires_at=t0 + timedelta(days=300), grace_seconds=1, rearm_seconds=1,
                     ceiling_percent=None)]
    held: dict[str, int] = defaultdict(int)
    minute = 0
    for step, grant, cls in ops:
        minute += step
        t = t0 + timedelta(minutes=minute)
        if grant:
            held[cls] += 1
            events.append(_event(Licence.SeatGranted, t, site="s", user=f"u{len(events)}",
                                 agent_class=cls, tenant="", campaign="", seat=len(events),
                                 overuse=False, offline=False, seq=None))
        elif held[cls]:
            held[cls] -= 1
            events.append(_event(Licence.SeatReleased, t, site="s", user="x", agent_class=cls,
                                 seat=0, reason="logoff", offline=False, seq=None))
    return events


def replay(events: list[Any], stops: set[int]) -> dict[tuple[str, str, str], tuple[Any, ...]]:
    return replay_sink(events, stops).months


def replay_sink(events: list[Any], stops: set[int]) -> _Sink:
    sink = _Sink()
    c = _Customer("Acme")
    for i, e in enumerate(events, start=1):
        _Replay(sink).apply(c, FakeRecord(i, e.timestamp.strftime("%Y-%m-%d"), e))
        if i in stops:  # a commit: rows written, state stored and read back
            c.emit_month(sink)
            row = type("Row", (), {"customer": c.name, "record_id": c.record_id,
                                   "first_day": c.first_day, "last_day": c.last_day,
                                   "state": c.to_json()})
            c = _Customer.from_row(row)
    c.emit_month(sink)
    return sink


def reference(events: list[Any]) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    """(month, pool) -> (agent-minutes, peak, minutes over, excess seat-minutes)."""
    end = events[-1].timestamp
    minutes = int((end - START).total_seconds() // 60)
    count: dict[str, int] = defaultdict(int)
    got: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    limits = {**LIMITS, "PRED+ACD": TOTAL}
    i = 0
    for m in range(minutes):
        t = START + timedelta(minutes=m)
        while i < len(events) and events[i].timestamp <= t:
            e = events[i]
            if isinstance(e, (Licence.SeatGranted, Licence.SeatReleased)):
                step = 1 if isinstance(e, Licence.SeatGranted) else -1
                for pool in (e.agent_class, "PRED+ACD"):
                    count[pool] += step
            i += 1
        month = f"{t:%Y-%m}"
        for pool, limit in limits.items():
            n = count[pool]
            acc = got[(month, pool)]
            acc[0] += n
            acc[1] = max(acc[1], n)
            if n > limit:
                acc[2] += 1
                acc[3] += n - limit
    return {k: (a, p, o, x) for k, (a, p, o, x) in got.items()}


ops = st.lists(st.tuples(st.integers(0, 240), st.booleans(), st.sampled_from(["PRED", "ACD"])),
               min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(ops=ops, stops=st.sets(st.integers(1, 41), max_size=6))
def test_month_rows_match_counting_every_minute(ops: list[tuple[int, bool, str]],
                                                stops: set[int]) -> None:
    events = history(ops)
    rows = replay(events, stops)
    want = reference(events)
    us = 60_000_000
    for (month, pool), (agent, peak, over, excess) in want.items():
        row = rows.get(("Acme", month, pool))
        if row is None:
            assert (agent, peak) == (0, 0)
            continue
        assert row[3] == agent * us, (month, pool)
        assert row[6] == over * us and row[8] == excess * us, (month, pool)
        # The peak reached on the last instant is pending: the reference stops before it.
        assert row[4] >= peak


@settings(max_examples=40, deadline=None)
@given(ops=ops, stops=st.sets(st.integers(1, 41), max_size=6))
def test_stopping_anywhere_and_resuming_from_the_stored_state_changes_nothing(
        ops: list[tuple[int, bool, str]], stops: set[int]) -> None:
    events = history(ops)
    assert replay(events, stops) == replay(events, set())


SITES = ("north", "south", "down")
site_ops = st.lists(st.tuples(st.integers(0, 240), st.booleans(), st.sampled_from(["PRED", "ACD"]),
                              st.sampled_from(SITES)), min_size=1, max_size=40)


def site_history(ops: list[tuple[int, bool, str, str]]) -> list[Any]:
    """Like :func:`history`, at three sites; a release only where a seat is held."""
    t0 = START
    events = [_event(Licence.LicenceAmended, t0, limits=LIMITS, total_pred_acd=TOTAL,
                     expires_at=t0 + timedelta(days=300), grace_seconds=1, rearm_seconds=1,
                     ceiling_percent=None)]
    held: dict[tuple[str, str], int] = defaultdict(int)
    minute = 0
    for step, grant, cls, site in ops:
        minute += step
        t = t0 + timedelta(minutes=minute)
        if grant:
            held[(site, cls)] += 1
            events.append(_event(Licence.SeatGranted, t, site=site, user=f"u{len(events)}",
                                 agent_class=cls, tenant="", campaign="", seat=len(events),
                                 overuse=False, offline=False, seq=None))
        elif held[(site, cls)]:
            held[(site, cls)] -= 1
            events.append(_event(Licence.SeatReleased, t, site=site, user="x",
                                 agent_class=cls, seat=0, reason="logoff", offline=False,
                                 seq=None))
    return events


def site_reference(events: list[Any]) -> dict[tuple[str, str, str], tuple[int, float]]:
    """(month, class, site) -> (agent-minutes, share of the class's excess seat-minutes)."""
    end = events[-1].timestamp
    minutes = int((end - START).total_seconds() // 60)
    count: dict[tuple[str, str], int] = defaultdict(int)
    got: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    i = 0
    for m in range(minutes):
        t = START + timedelta(minutes=m)
        while i < len(events) and events[i].timestamp <= t:
            e = events[i]
            if isinstance(e, (Licence.SeatGranted, Licence.SeatReleased)):
                count[(e.site, e.agent_class)] += 1 if isinstance(e, Licence.SeatGranted) else -1
            i += 1
        for cls, limit in LIMITS.items():
            total = sum(count[(s, cls)] for s in SITES)
            for site in SITES:
                n = count[(site, cls)]
                acc = got[(f"{t:%Y-%m}", cls, site)]
                acc[0] += n
                if total > limit:
                    acc[1] += (total - limit) * n / total
    return {k: (int(a), x) for k, (a, x) in got.items()}


@settings(max_examples=60, deadline=None)
@given(ops=site_ops, stops=st.sets(st.integers(1, 41), max_size=6))
def test_site_rows_share_out_the_class_rows_and_resuming_changes_nothing(
        ops: list[tuple[int, bool, str, str]], stops: set[int]) -> None:
    events = site_history(ops)
    sink = replay_sink(events, stops)
    assert sink.sites == replay_sink(events, set()).sites
    us = 60_000_000
    for (month, cls, site), (agent, share) in site_reference(events).items():
        row = sink.sites.get(("Acme", month, cls, site))
        if row is None:
            assert agent == 0
            continue
        assert row[4] == agent * us, (month, cls, site)
        # Rounded down once per stretch between records: within a microsecond each. (The
        # reference sums floats minute by minute: it may fall short of the exact figure by a
        # fraction of a microsecond, hence the one above.)
        assert share * us - len(events) <= row[5] <= share * us + 1, (month, cls, site)
    for (_, month, pool), row in sink.months.items():
        if pool in LIMITS:  # the sites' seat time is the class's, and no more is shared out
            sites = [r for k, r in sink.sites.items() if k[1:3] == (month, pool)]
            assert sum(r[4] for r in sites) == row[3]
            assert sum(r[5] for r in sites) <= row[8]


def test_months_are_utc_calendar_months() -> None:
    index = parse_month("2026-02")
    assert month_label(index) == "2026-02"
    start, end = month_range(index)
    assert (end - start) == 28 * 24 * 3600 * 10**6
    assert month_index(end - 1) == index and month_index(end) == index + 1
    assert month_label(parse_month("2025-12") + 1) == "2026-01"
