"""Usage: per UTC hour (and so per day), by site, tenant, campaign and agent class —
agent-hours, peak concurrency and when it was first reached, over-use, grants and refusals.

Billing by agent-hours sums ``agent_us``; billing by peak concurrency takes the maximum of
``peak``. The ``class`` dimension also has a ``PRED+ACD`` group (the two counted together),
which gives the combined peak whether or not the licence caps it.

Time. Usage is the master's count, bucketed by the ledger's record time (``timestamp``),
which never runs backwards. A site's offline seat events carry their original times in
``occurred_at`` (the point-in-time view uses those); here they count from the moment they
were recorded, because the master counted the site's seats until its cut-off and the hours
already written cannot change without re-deriving them. So a statement never shifts after it
was issued, and replaying the log gives the same numbers every time.

Over-use. ``over_limit_us`` (class groups only) is the time the class's seats in use were
above its licensed limit; ``overuse_agent_us`` is the seat time of seats granted as over-use.

Each group (dimension, key, class) keeps its current hour in memory; handlers do a few
integer operations per group, and a flush writes the hours a batch touched.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs
from sqlalchemy import Connection, delete, select, tuple_

from ledger.licence import Licence
from ledger.values import COMBINED_MEMBERS, COMBINED_POOL

from .base import Handler, Projection
from .engine import upsert
from .errors import ProjectionError
from .schema import TABLES_BY_PROJECTION, usage_held, usage_hours, usage_refusals
from .timestamps import US_PER_HOUR, from_us, maybe_from_us, to_us

DIMENSIONS: tuple[str, ...] = ("site", "tenant", "campaign", "class")
PERIODS: tuple[str, ...] = ("day", "hour")


class _Group:
    """One (dimension, key, class): running counts and the current hour's totals."""

    __slots__ = ("dim", "key", "cls", "hour", "since", "count", "ocount", "limit", "over",
                 "agent", "oagent", "over_us", "peak", "peak_at", "grants", "ogrants",
                 "offgrants", "releases", "dirty", "_sink")

    def __init__(self, dim: str, key: str, cls: str, t: int, limit: int | None,
                 sink: _Sink) -> None:
        self.dim, self.key, self.cls = dim, key, cls
        self.hour = t // US_PER_HOUR
        self.since = t
        self.count = self.ocount = 0
        self.limit = limit
        self.over = False
        self._sink = sink
        self._start_hour(0)
        self.dirty = False
        self.touch()

    def _start_hour(self, count: int) -> None:
        self.agent = self.oagent = self.over_us = 0
        self.peak = count
        self.peak_at: int | None = self.since if count else None
        self.grants = self.ogrants = self.offgrants = self.releases = 0

    def touch(self) -> None:
        if not self.dirty:
            self.dirty = True
            self._sink.dirty.append(self)

    def advance(self, t: int, hour: int) -> None:
        """Account for the time up to ``t`` (``hour`` is ``t``'s hour)."""
        if hour != self.hour:
            self._roll(hour)
        dt = t - self.since
        if dt > 0:
            self.agent += self.count * dt
            if self.ocount:
                self.oagent += self.ocount * dt
            if self.over:
                self.over_us += dt
            self.since = t

    def _roll(self, hour: int) -> None:
        end = (self.hour + 1) * US_PER_HOUR
        self.advance(end, self.hour)
        rows = self._sink.closed
        rows.append(self.row(False))
        count, ocount = self.count, self.ocount
        if count:
            for idle in range(self.hour + 1, hour):
                start = idle * US_PER_HOUR
                rows.append(_row(self.dim, key=self.key, cls=self.cls, hour=idle,
                                 agent=count * US_PER_HOUR, oagent=ocount * US_PER_HOUR,
                                 over_us=US_PER_HOUR if self.over else 0, peak=count,
                                 peak_at=start, limit=self.limit, open_=False,
                                 end=start + US_PER_HOUR, count=count, ocount=ocount))
        self.hour = hour
        self.since = hour * US_PER_HOUR
        self._start_hour(count)
        self.touch()

    def grant(self, t: int, hour: int, overuse: bool, offline: bool) -> None:
        self.advance(t, hour)
        self.count += 1
        if self.count > self.peak:
            self.peak = self.count
            self.peak_at = t
        self.grants += 1
        if overuse:
            self.ocount += 1
            self.ogrants += 1
        if offline:
            self.offgrants += 1
        if self.limit is not None:
            self.over = self.count > self.limit
        self.touch()

    def release(self, t: int, hour: int, overuse: bool) -> None:
        self.advance(t, hour)
        self.count -= 1
        self.releases += 1
        if overuse:
            self.ocount -= 1
        if self.limit is not None:
            self.over = self.count > self.limit
        self.touch()

    def set_limit(self, t: int, hour: int, limit: int | None) -> None:
        self.advance(t, hour)
        self.limit = limit
        self.over = limit is not None and self.count > limit
        self.touch()

    def row(self, open_: bool) -> dict[str, Any]:
        return {"dim": self.dim, "hour": self.hour, "key": self.key, "agent_class": self.cls,
                "agent_us": self.agent, "overuse_agent_us": self.oagent,
                "over_limit_us": self.over_us, "peak": self.peak, "peak_us": self.peak_at,
                "grants": self.grants, "overuse_grants": self.ogrants,
                "offline_grants": self.offgrants, "releases": self.releases,
                "limit": self.limit, "open": open_, "end_us": self.since,
                "end_count": self.count, "end_overuse_count": self.ocount}

    @classmethod
    def from_row(cls, r: Mapping[str, Any], sink: _Sink) -> _Group:
        g = cls.__new__(cls)
        g.dim, g.key, g.cls, g.hour = r["dim"], r["key"], r["agent_class"], r["hour"]
        g.since, g.count, g.ocount = r["end_us"], r["end_count"], r["end_overuse_count"]
        g.limit = r["limit"]
        g.over = g.limit is not None and g.count > g.limit
        g.agent, g.oagent, g.over_us = r["agent_us"], r["overuse_agent_us"], r["over_limit_us"]
        g.peak, g.peak_at = r["peak"], r["peak_us"]
        g.grants, g.ogrants = r["grants"], r["overuse_grants"]
        g.offgrants, g.releases = r["offline_grants"], r["releases"]
        g._sink, g.dirty = sink, False
        return g


def _row(dim: str, *, key: str, cls: str, hour: int, agent: int, oagent: int, over_us: int,
         peak: int, peak_at: int | None, limit: int | None, open_: bool, end: int, count: int,
         ocount: int) -> dict[str, Any]:
    return {"dim": dim, "hour": hour, "key": key, "agent_class": cls, "agent_us": agent,
            "overuse_agent_us": oagent, "over_limit_us": over_us, "peak": peak,
            "peak_us": peak_at, "grants": 0, "overuse_grants": 0, "offline_grants": 0,
            "releases": 0, "limit": limit, "open": open_, "end_us": end, "end_count": count,
            "end_overuse_count": ocount}


class _Sink:
    """What a batch has changed, waiting for the flush."""

    def __init__(self) -> None:
        self.dirty: list[_Group] = []
        self.closed: list[dict[str, Any]] = []


class UsageProjection(Projection):
    """Hourly usage buckets (DESIGN.md section 6: the daily usage statement)."""

    name = "usage"
    tables = TABLES_BY_PROJECTION["usage"]

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._sink = _Sink()
        self._groups: dict[tuple[str, str, str], _Group] = {}
        self._by_labels: dict[tuple[str, str, str, str], tuple[_Group, ...]] = {}
        self._limits: dict[str, int] = {}
        self._held: dict[tuple[str, str], tuple[str, str, bool]] = {}
        self._held_new: dict[tuple[str, str], tuple[str, str, bool]] = {}
        self._held_gone: set[tuple[str, str]] = set()
        self._refusals: dict[tuple[str, int, str, str, str], int] = defaultdict(int)

    # ---------------------------------------------------------------- persistence
    def load(self, conn: Connection) -> None:
        self._reset()
        for r in conn.execute(select(usage_hours).where(usage_hours.c.open)).mappings():
            g = _Group.from_row(r, self._sink)
            self._groups[(g.dim, g.key, g.cls)] = g
            if g.dim == "class" and g.limit is not None:
                self._limits[g.key] = g.limit
        for r in conn.execute(select(usage_held)).mappings():
            self._held[(r["site"], r["user"])] = (r["tenant"], r["campaign"], bool(r["overuse"]))

    def flush(self, conn: Connection) -> None:
        sink = self._sink
        rows = sink.closed
        for g in sink.dirty:
            rows.append(g.row(True))
            g.dirty = False
        upsert(conn, usage_hours, rows)
        sink.dirty, sink.closed = [], []
        if self._held_gone:
            keys = list(self._held_gone)
            for i in range(0, len(keys), 500):
                conn.execute(delete(usage_held).where(
                    tuple_(usage_held.c.site, usage_held.c.user).in_(keys[i:i + 500])))
            self._held_gone = set()
        if self._held_new:
            conn.execute(usage_held.insert(), [
                {"site": s, "user": u, "tenant": t, "campaign": c, "overuse": o}
                for (s, u), (t, c, o) in self._held_new.items()])
            self._held_new = {}
        if self._refusals:
            upsert(conn, usage_refusals, [
                {"dim": d, "hour": h, "key": k, "agent_class": c, "reason": r, "count": n}
                for (d, h, k, c, r), n in self._refusals.items()], increment=("count",))
            self._refusals = defaultdict(int)

    # ---------------------------------------------------------------- handlers
    def handlers(self) -> Mapping[type, Handler]:
        L = Licence
        return {L.LicenceIssued: self._terms, L.LicenceAmended: self._terms,
                L.SeatGranted: self._granted, L.SeatReleased: self._released,
                L.SeatRefused: self._refused}

    def _group(self, dim: str, key: str, cls: str, t: int) -> _Group:
        g = self._groups.get((dim, key, cls))
        if g is None:
            limit = self._limits.get(key) if dim == "class" else None
            g = self._groups[(dim, key, cls)] = _Group(dim, key, cls, t, limit, self._sink)
        return g

    def _groups_for(self, site: str, tenant: str, campaign: str, cls: str,
                    t: int) -> tuple[_Group, ...]:
        groups = self._by_labels.get((site, tenant, campaign, cls))
        if groups is None:
            found = [self._group("site", site, cls, t), self._group("tenant", tenant, cls, t),
                     self._group("campaign", campaign, cls, t), self._group("class", cls, cls, t)]
            if cls in COMBINED_MEMBERS:
                found.append(self._group("class", COMBINED_POOL, COMBINED_POOL, t))
            groups = self._by_labels[(site, tenant, campaign, cls)] = tuple(found)
        return groups

    def _terms(self, _nid: int, e: Any) -> None:
        t = to_us(e.timestamp)
        hour = t // US_PER_HOUR
        limits = dict(e.limits)
        if e.total_pred_acd is not None:
            limits[COMBINED_POOL] = e.total_pred_acd
        self._limits = limits
        # Every limited class gets a group now, so that its limit is stored even before
        # its first seat (a resumed runner reads limits back from the groups).
        for key in limits:
            self._group("class", key, key, t)
        for (dim, key, _cls), g in self._groups.items():
            if dim == "class" and g.limit != limits.get(key):
                g.set_limit(t, hour, limits.get(key))

    def _granted(self, _nid: int, e: Any) -> None:
        t = to_us(e.timestamp)
        hour = t // US_PER_HOUR
        overuse, offline = e.overuse, e.offline
        for g in self._groups_for(e.site, e.tenant, e.campaign, e.agent_class, t):
            g.grant(t, hour, overuse, offline)
        key = (e.site, e.user)
        labels = (e.tenant, e.campaign, overuse)
        self._held[key] = labels
        self._held_new[key] = labels

    def _released(self, nid: int, e: Any) -> None:
        key = (e.site, e.user)
        try:
            tenant, campaign, overuse = self._held.pop(key)
        except KeyError:
            raise ProjectionError(
                f"record {nid}: release of a seat the usage view does not hold "
                f"({e.site}/{e.user}): rebuild it with 'seatledger projections rebuild usage'"
            ) from None
        if self._held_new.pop(key, None) is None:
            self._held_gone.add(key)
        t = to_us(e.timestamp)
        hour = t // US_PER_HOUR
        for g in self._groups_for(e.site, tenant, campaign, e.agent_class, t):
            g.release(t, hour, overuse)

    def _refused(self, _nid: int, e: Any) -> None:
        hour = to_us(e.timestamp) // US_PER_HOUR
        cls, reason = e.agent_class, e.reason
        for dim, key in (("site", e.site), ("tenant", e.tenant), ("campaign", e.campaign),
                         ("class", cls)):
            self._refusals[(dim, hour, key, cls, reason)] += 1


# ------------------------------------------------------------------ the statement
@attrs.frozen
class UsageRow:
    """Usage of one key (site, tenant, campaign or class) and class in one day or hour."""

    period: datetime
    key: str
    agent_class: str
    agent_hours: float
    peak: int
    peak_at: datetime | None
    limit: int | None
    over_limit_minutes: float | None  # class rows only: time above the licensed limit
    overuse_agent_hours: float
    grants: int
    overuse_grants: int
    offline_grants: int
    refusals: Mapping[str, int]

    @property
    def refused(self) -> int:
        return sum(self.refusals.values())


@attrs.frozen
class UsageReport:
    """A usage statement: rows for [start, end), by one dimension, per day or hour."""

    start: datetime
    end: datetime
    by: str
    period: str
    as_of: datetime | None
    rows: tuple[UsageRow, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "by": self.by, "period": self.period,
                "as_of": self.as_of,
                "rows": [dict(attrs.asdict(r), refused=r.refused) for r in self.rows]}


def usage_report(conn: Connection, start: datetime, end: datetime, *, by: str = "site",
                 period: str = "day", as_of: datetime | None = None) -> UsageReport:
    """The usage statement for [start, end), widened to whole hours (or days).

    ``as_of`` is the instant up to which seats still held are counted; by default the record
    time of the last event the view has applied. Raises ProjectionError for a bad ``by`` or
    ``period``.
    """
    if by not in DIMENSIONS:
        raise ProjectionError(f"cannot report usage by {by!r}: use one of {', '.join(DIMENSIONS)}")
    if period not in PERIODS:
        raise ProjectionError(f"bad period {period!r}: use day or hour")
    step = 24 if period == "day" else 1
    unit = step * US_PER_HOUR
    h0 = to_us(start) // unit * step
    h1 = -(-to_us(end) // unit) * step
    if as_of is None:
        from .tracking import read_event_time

        as_of = read_event_time(conn, UsageProjection.name)
    stop = min(h1 * US_PER_HOUR, to_us(as_of)) if as_of is not None else h1 * US_PER_HOUR

    buckets: dict[tuple[int, str, str], list[Any]] = {}
    columns = (usage_hours.c.hour, usage_hours.c.key, usage_hours.c.agent_class,
               usage_hours.c.agent_us, usage_hours.c.overuse_agent_us,
               usage_hours.c.over_limit_us, usage_hours.c.peak, usage_hours.c.peak_us,
               usage_hours.c.grants, usage_hours.c.overuse_grants,
               usage_hours.c.offline_grants, usage_hours.c.limit)
    in_range = (usage_hours.c.dim == by) & (usage_hours.c.hour >= h0) & (usage_hours.c.hour < h1)
    for r in conn.execute(select(*columns).where(in_range)):
        buckets[(r[0], r[1], r[2])] = list(r[3:])
    # Groups still holding seats have counted up to their last event only: carry them on.
    carried = select(usage_hours.c.hour, usage_hours.c.key, usage_hours.c.agent_class,
                     usage_hours.c.end_us, usage_hours.c.end_count,
                     usage_hours.c.end_overuse_count, usage_hours.c.limit).where(
        (usage_hours.c.dim == by) & usage_hours.c.open & (usage_hours.c.end_count > 0)
        & (usage_hours.c.end_us < stop))
    for hour, key, cls, since, count, ocount, limit in conn.execute(carried):
        over = limit is not None and count > limit
        t = since
        while t < stop:
            h = t // US_PER_HOUR
            upto = min((h + 1) * US_PER_HOUR, stop)
            if h >= h0:
                b = buckets.get((h, key, cls))
                if b is None:
                    b = buckets[(h, key, cls)] = [0, 0, 0, count, t, 0, 0, 0, limit]
                b[0] += count * (upto - t)
                b[1] += ocount * (upto - t)
                if over:
                    b[2] += upto - t
            t = upto

    refusals: dict[tuple[int, str, str], dict[str, int]] = defaultdict(dict)
    rin = (usage_refusals.c.dim == by) & (usage_refusals.c.hour >= h0) & (usage_refusals.c.hour < h1)
    for hour, key, cls, reason, n in conn.execute(select(
            usage_refusals.c.hour, usage_refusals.c.key, usage_refusals.c.agent_class,
            usage_refusals.c.reason, usage_refusals.c.count).where(rin)):
        p = hour // step * step
        got = refusals[(p, key, cls)]
        got[reason] = got.get(reason, 0) + n

    periods: dict[tuple[int, str, str], list[Any]] = {}
    for (hour, key, cls), b in sorted(buckets.items()):
        p = hour // step * step
        acc = periods.get((p, key, cls))
        if acc is None:
            periods[(p, key, cls)] = list(b)
            continue
        acc[0] += b[0]
        acc[1] += b[1]
        acc[2] += b[2]
        if b[3] > acc[3] or (b[3] == acc[3] and b[4] is not None
                             and (acc[4] is None or b[4] < acc[4])):
            acc[3], acc[4] = b[3], b[4]
        acc[5] += b[5]
        acc[6] += b[6]
        acc[7] += b[7]
        acc[8] = b[8]  # the limit at the end of the period
    for k in refusals:
        periods.setdefault(k, [0, 0, 0, 0, None, 0, 0, 0, None])
    rows = tuple(
        UsageRow(
            period=from_us(p * US_PER_HOUR), key=key, agent_class=cls,
            agent_hours=b[0] / US_PER_HOUR, peak=b[3], peak_at=maybe_from_us(b[4]),
            limit=b[8], over_limit_minutes=(b[2] / 60_000_000) if by == "class" else None,
            overuse_agent_hours=b[1] / US_PER_HOUR, grants=b[5], overuse_grants=b[6],
            offline_grants=b[7], refusals=dict(sorted(refusals.get((p, key, cls), {}).items())))
        for (p, key, cls), b in sorted(periods.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2]))
    )
    return UsageReport(start=from_us(h0 * US_PER_HOUR), end=from_us(h1 * US_PER_HOUR), by=by,
                       period=period, as_of=as_of, rows=rows)


def hourly_series(conn: Connection, pools: Sequence[str], start: datetime, end: datetime,
                  as_of: datetime | None = None) -> dict[str, list[UsageRow]]:
    """Per pool (class or PRED+ACD), its hourly rows in [start, end): for charts."""
    report = usage_report(conn, start, end, by="class", period="hour", as_of=as_of)
    series: dict[str, list[UsageRow]] = {p: [] for p in pools}
    for row in report.rows:
        if row.key in series:
            series[row.key].append(row)
    return series


__all__ = ["DIMENSIONS", "PERIODS", "UsageProjection", "UsageReport", "UsageRow",
           "hourly_series", "usage_report"]
