"""Usage: per UTC hour (and so per day), by site, tenant, campaign and agent class —
agent-hours, peak concurrency and when it was first reached, over-use, grants and refusals.

Billing by agent-hours sums ``agent_us``; billing by peak concurrency takes the maximum of
``peak``. The ``class`` dimension also has a ``PRED+ACD`` group (the two counted together),
which gives the combined peak whether or not the licence caps it.

Time. Usage is the master's count, bucketed by the ledger's record time (``timestamp``),
which never runs backwards. A site's offline seat events carry their original times in
``occurred_at`` (the point-in-time view uses those); here they count from the moment they
were recorded, because the master kept counting the site's seats while it was silent (also
once cut off) and the hours already written cannot change without re-deriving them. (An
hours licence's balance also charges a synced site's offline grants for the time before
they were recorded: ``HoursCharged``.) So a statement never shifts after it was issued, and
replaying the log gives the same numbers every time.

Over-use. For a class (a pool), ``over_limit_us`` is the time its seats in use were above
its licensed limit and ``excess_agent_us`` the seat time above it (5 seats over for 2 hours
is 10 excess agent-hours): both are what over-use is billed on. For a site, tenant or
campaign, ``overuse_agent_us`` is the seat time of its seats that were granted as over-use,
which says who took the class over its limit.

Hours licences. Per class with an agent-hours allowance the view keeps the ledger's own
balance (:class:`ledger.domain.hours.Balance`, moved on by the same
:func:`~ledger.domain.hours.apply_hours_event` as the licence aggregate's events), stored
as it stood at the end of each hour with events, with the offline use charged so far. A
statement's hours granted, used and charged in a period are the differences of those at
the period's two ends (:class:`HoursUsage`), and what is left is the balance at its end.

Each group (dimension, key, class) keeps its current hour in memory; handlers do a few
integer operations per group, and a flush writes the hours a batch touched.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs
from sqlalchemy import Connection, func, select, text

from ledger.domain.hours import Balance, HoursEventKind, apply_hours_event
from ledger.domain.licence import Licence
from ledger.domain.values import AGENT_CLASSES, COMBINED_MEMBERS, COMBINED_POOL

from .base import Handler, Projection
from .engine import execute_many, write_rows
from .errors import ProjectionError
from .labels import Labels, labels_for
from .schema import (
    TABLES_BY_PROJECTION,
    usage_agent_hours,
    usage_held,
    usage_hours,
    usage_refusals,
)
from .timestamps import US_PER_HOUR, from_us, maybe_from_us, to_us
from .tracking import read_event_time

DIMENSIONS: tuple[str, ...] = ("site", "tenant", "campaign", "class")
_DELETE_HELD = 'DELETE FROM "view_usage_held" WHERE "grant_id" = ?'
PERIODS: tuple[str, ...] = ("day", "hour")
_HOURS_GRANTED, _HOURS_RELEASED = HoursEventKind.GRANTED, HoursEventKind.RELEASED


class _Group:
    """One (dimension, key, class): running counts and the current hour's totals.

    ``stored`` is ``key`` as the tables hold it (sealed).
    """

    __slots__ = ("dim", "key", "stored", "cls", "hour", "since", "count", "ocount", "limit", "over",
                 "agent", "oagent", "over_us", "excess", "peak", "peak_at", "grants", "ogrants",
                 "offgrants", "releases", "dirty", "_sink")

    def __init__(self, dim: str, key: str, stored: bytes, cls: str, t: int, limit: int | None,
                 sink: _Sink) -> None:
        self.dim, self.key, self.stored, self.cls = dim, key, stored, cls
        self.hour = t // US_PER_HOUR
        self.since = t
        self.count = self.ocount = 0
        self.limit = limit
        self.over = False
        self._sink = sink
        self._start_hour()
        self.dirty = False
        self.touch()

    def _start_hour(self) -> None:
        self.agent = self.oagent = self.over_us = self.excess = 0
        self.peak = 0
        self.peak_at: int | None = None
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
            if self.count > self.peak:
                self.peak, self.peak_at = self.count, self.since
            self.agent += self.count * dt
            if self.ocount:
                self.oagent += self.ocount * dt
            if self.over:
                self.over_us += dt
                self.excess += (self.count - self.limit) * dt  # type: ignore[operator]
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
                over = US_PER_HOUR if self.over else 0
                excess = (count - (self.limit or 0)) * over
                rows.append(_row(self.dim, key=self.stored, cls=self.cls, hour=idle,
                                 agent=count * US_PER_HOUR, oagent=ocount * US_PER_HOUR,
                                 over_us=over, excess=excess,
                                 peak=count, peak_at=start, limit=self.limit,
                                 end=start + US_PER_HOUR, count=count, ocount=ocount))
        self.hour = hour
        self.since = hour * US_PER_HOUR
        self._start_hour()
        self.touch()

    # grant and release run for every seat event in every group: advance() and touch()
    # are written out in them.
    #
    # Peaks. The count at an instant is the count after every event recorded at that
    # instant (one ledger commit may grant and release at once), so an instant's count is
    # settled into the peak only when time moves past it. Until then it is pending: it is
    # ``count`` at ``since``, stored as end_count at end_us, and a report takes it into
    # account. An hour starts with the count carried in as its pending instant.
    def grant(self, t: int, hour: int, overuse: bool, offline: bool) -> None:
        if hour != self.hour:
            self._roll(hour)
        count = self.count
        dt = t - self.since
        if dt > 0:
            if count > self.peak:
                self.peak, self.peak_at = count, self.since
            self.agent += count * dt
            if self.ocount:
                self.oagent += self.ocount * dt
            if self.over:
                self.over_us += dt
                self.excess += (count - self.limit) * dt  # type: ignore[operator]
            self.since = t
        count += 1
        self.count = count
        self.grants += 1
        if overuse:
            self.ocount += 1
            self.ogrants += 1
        if offline:
            self.offgrants += 1
        if self.limit is not None:
            self.over = count > self.limit
        if not self.dirty:
            self.dirty = True
            self._sink.dirty.append(self)

    def release(self, t: int, hour: int, overuse: bool) -> None:
        if hour != self.hour:
            self._roll(hour)
        count = self.count
        dt = t - self.since
        if dt > 0:
            if count > self.peak:
                self.peak, self.peak_at = count, self.since
            self.agent += count * dt
            if self.ocount:
                self.oagent += self.ocount * dt
            if self.over:
                self.over_us += dt
                self.excess += (count - self.limit) * dt  # type: ignore[operator]
            self.since = t
        count -= 1
        self.count = count
        self.releases += 1
        if overuse:
            self.ocount -= 1
        if self.limit is not None:
            self.over = count > self.limit
        if not self.dirty:
            self.dirty = True
            self._sink.dirty.append(self)

    def set_limit(self, t: int, hour: int, limit: int | None) -> None:
        self.advance(t, hour)
        self.limit = limit
        self.over = limit is not None and self.count > limit
        self.touch()

    def row(self, open_: bool) -> tuple[Any, ...]:
        """This hour as a ``view_usage_hours`` row (column order)."""
        return (self.dim, self.hour, self.stored, self.cls, self.agent, self.oagent, self.over_us,
                self.excess, self.peak, self.peak_at, self.grants, self.ogrants, self.offgrants,
                self.releases, self.limit, open_, self.since, self.count, self.ocount)

    @classmethod
    def from_row(cls, r: Any, sink: _Sink, labels: Labels) -> _Group:
        g = cls.__new__(cls)
        g.dim, g.cls, g.hour = r["dim"], r["agent_class"], r["hour"]
        g.stored = bytes(r["key"])
        g.key = labels.for_dimension(g.dim).open(g.stored)
        g.since, g.count, g.ocount = r["end_us"], r["end_count"], r["end_overuse_count"]
        g.limit = r["limit"]
        g.over = g.limit is not None and g.count > g.limit
        g.agent, g.oagent, g.over_us = r["agent_us"], r["overuse_agent_us"], r["over_limit_us"]
        g.excess = r["excess_agent_us"]
        g.peak, g.peak_at = r["peak"], r["peak_us"]
        g.grants, g.ogrants = r["grants"], r["overuse_grants"]
        g.offgrants, g.releases = r["offline_grants"], r["releases"]
        g._sink, g.dirty = sink, False
        return g


def _balance_from_row(r: Any) -> Balance:
    """A ``view_usage_agent_hours`` row's balance."""
    return Balance(r["agent_class"], from_us(r["as_of_us"]), r["left_us"], r["held"],
                   r["base_us"], r["added_us"], r["notified"], bool(r["exhausted"]))


def _row(dim: str, *, key: bytes, cls: str, hour: int, agent: int, oagent: int, over_us: int,
         excess: int, peak: int, peak_at: int | None, limit: int | None, end: int, count: int,
         ocount: int) -> tuple[Any, ...]:
    """A closed hour without events as a ``view_usage_hours`` row (column order)."""
    return (dim, hour, key, cls, agent, oagent, over_us, excess, peak, peak_at, 0, 0, 0, 0,
            limit, False, end, count, ocount)


class _Sink:
    """What a batch has changed, waiting for the flush."""

    def __init__(self) -> None:
        self.dirty: list[_Group] = []
        self.closed: list[tuple[Any, ...]] = []


class UsageProjection(Projection):
    """Hourly usage buckets (DESIGN.md section 6: the daily usage statement)."""

    name = "usage"
    tables = TABLES_BY_PROJECTION["usage"]

    def __init__(self, labels: Labels | None = None) -> None:
        super().__init__(labels)
        self._reset()

    def _reset(self) -> None:
        self._sink = _Sink()
        self._groups: dict[tuple[str, str, str], _Group] = {}
        self._by_labels: dict[tuple[str, str, str, str], tuple[_Group, ...]] = {}
        self._limits: dict[str, int] = {}
        # (site, user) -> (the seat's groups, overuse, grant id)
        self._held: dict[tuple[str, str], tuple[tuple[_Group, ...], bool, int]] = {}
        self._held_new: dict[tuple[str, str], tuple[tuple[_Group, ...], bool, int]] = {}
        self._held_gone: list[tuple[int]] = []
        self._refusals: dict[tuple[str, int, str, str, str], int] = defaultdict(int)
        # Hours licences: per class with an allowance, the balance and the offline use
        # charged in all; and the classes' hours a batch changed, by (class, hour).
        self._balances: dict[str, Balance] = {}
        self._charged: dict[str, int] = {}
        self._hours_new: dict[tuple[str, int], tuple[Balance, int]] = {}
        self._stamp: Any = None  # the last record time converted, and its conversion
        self._t = self._hour = 0

    def _time(self, stamp: datetime) -> tuple[int, int]:
        # Events of one ledger commit share their record time: convert it once.
        if stamp != self._stamp:
            self._stamp = stamp
            self._t = to_us(stamp)
            self._hour = self._t // US_PER_HOUR
        return self._t, self._hour

    # ---------------------------------------------------------------- persistence
    def load(self, conn: Connection) -> None:
        self._reset()
        for r in conn.execute(select(usage_hours).where(usage_hours.c.open)).mappings():
            g = _Group.from_row(r, self._sink, self.labels)
            self._groups[(g.dim, g.key, g.cls)] = g
            if g.dim == "class" and g.limit is not None:
                self._limits[g.key] = g.limit
        labels = self.labels
        for r in conn.execute(select(usage_held)).mappings():
            site = labels.site.open(r["site"])
            groups = self._groups_for(site, labels.tenant.open(r["tenant"]),
                                      labels.campaign.open(r["campaign"]), r["agent_class"], 0)
            self._held[(site, labels.user.open(r["user"]))] = (
                groups, bool(r["overuse"]), r["grant_id"])
        a = usage_agent_hours.c
        latest = select(a.agent_class, func.max(a.hour).label("hour")).group_by(
            a.agent_class).subquery()
        for r in conn.execute(select(usage_agent_hours).join(
                latest, (a.agent_class == latest.c.agent_class) & (a.hour == latest.c.hour))
                ).mappings():
            self._balances[r["agent_class"]] = _balance_from_row(r)
            self._charged[r["agent_class"]] = r["charged_us"]

    def flush(self, conn: Connection) -> None:
        sink = self._sink
        rows = sink.closed
        for g in sink.dirty:
            rows.append(g.row(True))
            g.dirty = False
        write_rows(conn, usage_hours, rows, mode="upsert")
        sink.dirty, sink.closed = [], []
        if self._held_gone:
            execute_many(conn, _DELETE_HELD, self._held_gone)
            self._held_gone = []
        if self._held_new:
            # A seat's groups are its site's, tenant's, campaign's and class's, in that order.
            user = self.labels.user.seal
            write_rows(conn, usage_held, [
                (nid, groups[0].stored, user(name), groups[0].cls, groups[1].stored,
                 groups[2].stored, overuse)
                for (_site, name), (groups, overuse, nid) in self._held_new.items()])
            self._held_new = {}
        if self._refusals:
            seal = self.labels.for_dimension
            write_rows(conn, usage_refusals, [
                (dim, hour, seal(dim).seal(key), cls, reason, n)
                for (dim, hour, key, cls, reason), n in self._refusals.items()],
                mode="upsert", increment=("count",))
            self._refusals = defaultdict(int)
        if self._hours_new:
            write_rows(conn, usage_agent_hours, [
                (cls, hour, to_us(b.as_of), b.left_us, b.held, b.base_us, b.added_us,
                 b.notified, b.exhausted, charged)
                for (cls, hour), (b, charged) in self._hours_new.items()], mode="upsert")
            self._hours_new = {}

    # ---------------------------------------------------------------- handlers
    def handlers(self) -> Mapping[type, Handler]:
        L = Licence
        return {L.LicenceIssued: self._licensed, L.LicenceAmended: self._terms,
                L.LicenceInstalled: self._licensed,
                L.SeatGranted: self._granted, L.SeatReleased: self._released,
                L.SeatRefused: self._refused,
                L.HoursNoticeIssued: self._hours_changed, L.HoursExhausted: self._hours_changed,
                L.HoursCharged: self._hours_charged}

    def _group(self, dim: str, key: str, cls: str, t: int) -> _Group:
        g = self._groups.get((dim, key, cls))
        if g is None:
            limit = self._limits.get(key) if dim == "class" else None
            stored = self.labels.for_dimension(dim).seal(key)
            g = self._groups[(dim, key, cls)] = _Group(dim, key, stored, cls, t, limit,
                                                       self._sink)
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

    def _licensed(self, nid: int, e: Any) -> None:
        """New terms that may add agent-hours (none in events of earlier versions)."""
        self._terms(nid, e)
        for cls, n in (getattr(e, "hours", None) or {}).items():
            balance = self._balances.get(cls)
            if balance is None:  # it counts the seats of the class held already
                g = self._groups.get(("class", cls, cls))
                balance = Balance(cls, e.timestamp, held=g.count if g is not None else 0)
            self._hours(apply_hours_event(balance, HoursEventKind.ADDED, e.timestamp,
                                          added_us=n * US_PER_HOUR))

    def _hours(self, balance: Balance) -> None:
        cls = balance.agent_class
        self._balances[cls] = balance
        self._hours_new[(cls, to_us(balance.as_of) // US_PER_HOUR)] = (
            balance, self._charged.get(cls, 0))

    def _hours_changed(self, _nid: int, e: Any) -> None:
        self._hours(e.apply_to(self._balances[e.agent_class]))

    def _hours_charged(self, nid: int, e: Any) -> None:
        self._charged[e.agent_class] = self._charged.get(e.agent_class, 0) + e.charge_us
        self._hours_changed(nid, e)

    def _granted(self, nid: int, e: Any) -> None:
        t, hour = self._time(e.timestamp)
        overuse, offline = e.overuse, e.offline
        groups = self._groups_for(e.site, e.tenant, e.campaign, e.agent_class, t)
        for g in groups:
            g.grant(t, hour, overuse, offline)
        key = (e.site, e.user)
        held = (groups, overuse, nid)
        self._held[key] = held
        self._held_new[key] = held
        if self._balances and e.agent_class in self._balances:
            self._hours(apply_hours_event(self._balances[e.agent_class], _HOURS_GRANTED,
                                          e.timestamp))

    def _released(self, nid: int, e: Any) -> None:
        key = (e.site, e.user)
        try:
            groups, overuse, grant_id = self._held.pop(key)
        except KeyError:
            raise ProjectionError(
                f"record {nid}: release of a seat the usage view does not hold "
                f"({e.site}/{e.user}): rebuild it with 'seatledger projections rebuild usage'"
            ) from None
        if key in self._held_new:
            del self._held_new[key]
        else:
            self._held_gone.append((grant_id,))
        t, hour = self._time(e.timestamp)
        for g in groups:
            g.release(t, hour, overuse)
        if self._balances and e.agent_class in self._balances:
            self._hours(apply_hours_event(self._balances[e.agent_class], _HOURS_RELEASED,
                                          e.timestamp))

    def _refused(self, _nid: int, e: Any) -> None:
        hour = self._time(e.timestamp)[1]
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
    limit: int | None  # class rows: the licensed limit at the end of the period
    over_limit_minutes: float | None  # class rows: time above the limit
    excess_agent_hours: float | None  # class rows: seat time above the limit
    overuse_agent_hours: float  # seat time of seats granted as over-use
    grants: int
    overuse_grants: int
    offline_grants: int
    refusals: Mapping[str, int]
    # Class rows of a class licensed by hours: its agent-hours in the period.
    hours: HoursUsage | None = None

    @property
    def refused(self) -> int:
        return sum(self.refusals.values())


@attrs.frozen
class HoursUsage:
    """A class's agent-hours over a span (a period, or the whole report), counted as the
    ledger counts them (:mod:`ledger.domain.hours`): ``granted`` is what licences added in
    the span; ``used`` what was used in it, that is the seats of the class held times the
    time (a cut-off site's seats too) plus offline use charged when its site synced;
    ``charged`` that offline part; ``left`` and ``licensed`` (every hour ever granted) are
    as of the span's end. ``left`` is negative when overdrawn; ``overdrawn`` is then
    ``-left``, else 0.
    """

    agent_class: str
    licensed_hours: float
    granted_hours: float
    used_hours: float
    charged_hours: float
    left_hours: float
    overdrawn_hours: float

    @classmethod
    def between(cls, agent_class: str, first: _HoursMark | None, last: _HoursMark) -> HoursUsage:
        """From the class's counts at the span's start (None: no hours yet) and end."""
        first = first or _HoursMark(0, 0, 0, 0)
        return cls(agent_class, licensed_hours=last.added / US_PER_HOUR,
                   granted_hours=(last.added - first.added) / US_PER_HOUR,
                   used_hours=(last.used - first.used) / US_PER_HOUR,
                   charged_hours=(last.charged - first.charged) / US_PER_HOUR,
                   left_hours=last.left / US_PER_HOUR,
                   overdrawn_hours=max(-last.left, 0) / US_PER_HOUR)

    @property
    def active(self) -> bool:
        """Whether anything was granted, used or charged in the span."""
        return bool(self.granted_hours or self.used_hours or self.charged_hours)


@attrs.frozen
class _HoursMark:
    """A class's hours at an instant, in seat-microseconds: every one added, used (of
    those), charged for offline use (of those used), and left."""

    added: int
    used: int
    charged: int
    left: int


@attrs.frozen
class UsageReport:
    """A usage statement: rows for [start, end), by one dimension, per day or hour."""

    start: datetime
    end: datetime
    by: str
    period: str
    as_of: datetime | None
    rows: tuple[UsageRow, ...]
    # The classes licensed by hours, over the whole report (left: at its end, or at
    # ``as_of`` if that is earlier).
    hours: tuple[HoursUsage, ...] = ()

    def hours_at(self) -> list[tuple[str, float, float]]:
        """(class, agent-hours used in the report, agent-hours left at its end; negative:
        overdrawn), for each class licensed by hours."""
        return [(h.agent_class, h.used_hours, h.left_hours) for h in self.hours]

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "by": self.by, "period": self.period,
                "as_of": self.as_of,
                "rows": [dict(attrs.asdict(r), refused=r.refused) for r in self.rows],
                "hours": [attrs.asdict(h) for h in self.hours]}


# Positions in a period's totals while a report is summed up.
_AGENT, _OAGENT, _OVER, _EXCESS, _PEAK, _PEAK_AT, _GRANTS, _OGRANTS, _OFFGRANTS, _LIMIT = range(10)

# The database sums the hours into periods. The peak and the first instant it was reached
# are packed into one integer so that MAX() finds both (a higher peak wins; for equal peaks,
# the earlier instant); an open hour's pending instant counts as well. The hour and the
# limit are packed the same way, so that MAX() finds the period's last limit. Integer
# arithmetic only, the same in SQLite and PostgreSQL.
_PEAK_SCALE = 100_000_000_000  # > microseconds in a day
_LIMIT_SCALE = 10_000_000  # > any seat limit + 1
_SUMMED = text(f"""
SELECT hour / :step, "key", agent_class,
       SUM(agent_us), SUM(overuse_agent_us), SUM(over_limit_us), SUM(excess_agent_us),
       MAX(CASE WHEN "open" AND end_count > peak
                THEN end_count * {_PEAK_SCALE} + {_PEAK_SCALE - 1}
                     - (end_us - (hour / :step) * :unit)
                ELSE peak * {_PEAK_SCALE} + {_PEAK_SCALE - 1}
                     - COALESCE(peak_us - (hour / :step) * :unit, {_PEAK_SCALE - 1}) END),
       SUM(grants), SUM(overuse_grants), SUM(offline_grants),
       MAX(hour * {_LIMIT_SCALE} + COALESCE("limit" + 1, 0))
FROM view_usage_hours
WHERE dim = :by AND hour >= :h0 AND hour < :h1
GROUP BY 1, 2, 3
""")


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
        as_of = read_event_time(conn, UsageProjection.name)
    stop = h1 * US_PER_HOUR if as_of is None else min(h1 * US_PER_HOUR, to_us(as_of))
    # Keys are read sealed and opened here; the sums never need them in clear.
    name = labels_for(conn).for_dimension(by).open

    periods: dict[tuple[int, str, str], list[Any]] = {}
    for r in conn.execute(_SUMMED, {"by": by, "h0": h0, "h1": h1, "step": step,
                                    "unit": unit}):
        packed_peak, packed_limit = r[7], r[11]
        peak, rest = divmod(packed_peak, _PEAK_SCALE)
        limit = packed_limit % _LIMIT_SCALE - 1
        # PostgreSQL sums BIGINTs as NUMERIC: back to int, so that the hours are floats.
        periods[(r[0] * step, name(r[1]), r[2])] = [
            int(r[3]), int(r[4]), int(r[5]), int(r[6]), peak,
            r[0] * unit + _PEAK_SCALE - 1 - rest if peak else None,
            int(r[8]), int(r[9]), int(r[10]), None if limit < 0 else limit]
    # A group that still holds seats has counted up to its own last event only: carry it on
    # to ``stop`` (nothing changed in between, or it would have had an event).
    h = usage_hours.c
    carried = select(h.hour, h.key, h.agent_class, h.end_us, h.end_count,
                     h.end_overuse_count, h.limit).where(
        (h.dim == by) & h.open & (h.end_count > 0) & (h.end_us < stop))
    for open_hour, stored, cls, since, count, ocount, limit in conn.execute(carried):
        key = name(stored)
        over = limit is not None and count > limit
        t = max(since, h0 * US_PER_HOUR)
        while t < stop:
            p = t // unit * step
            upto = min((p + step) * US_PER_HOUR, stop)
            b = periods.get((p, key, cls))
            if b is None:
                b = periods[(p, key, cls)] = [0, 0, 0, 0, 0, None, 0, 0, 0, limit]
            b[_AGENT] += count * (upto - t)
            b[_OAGENT] += ocount * (upto - t)
            if over:
                b[_OVER] += upto - t
                b[_EXCESS] += (count - limit) * (upto - t)
            # The stored open hour already counts ``count`` in its peak; later hours start
            # with it.
            first_new_hour = max(t, (open_hour + 1) * US_PER_HOUR)
            if count > b[_PEAK] and first_new_hour < upto:
                b[_PEAK], b[_PEAK_AT] = count, first_new_hour
            b[_LIMIT] = limit
            t = upto

    refusals: dict[tuple[int, str, str], dict[str, int]] = defaultdict(dict)
    f = usage_refusals.c
    for hour, stored, cls, reason, n in conn.execute(
            select(f.hour, f.key, f.agent_class, f.reason, f["count"]).where(
                (f.dim == by) & (f.hour >= h0) & (f.hour < h1))):
        got = refusals[(hour // step * step, name(stored), cls)]
        got[reason] = got.get(reason, 0) + n
    for k in refusals:
        periods.setdefault(k, [0, 0, 0, 0, 0, None, 0, 0, 0, None])
    history = _HoursHistory.read(conn, h0, h1)
    pools = by == "class"
    # Class rows carry their class's hours; a period in which hours were granted but no
    # seat was used gets a row for them.
    hours = history.per_period(h0, h1, step, stop) if pools else {}
    for k, spent in hours.items():
        if spent.active:
            periods.setdefault(k, [0, 0, 0, 0, 0, None, 0, 0, 0, None])
    rows = tuple(
        UsageRow(
            period=from_us(p * US_PER_HOUR), key=key, agent_class=cls,
            agent_hours=b[_AGENT] / US_PER_HOUR, peak=b[_PEAK],
            peak_at=maybe_from_us(b[_PEAK_AT]), limit=b[_LIMIT],
            over_limit_minutes=b[_OVER] / 60_000_000 if pools else None,
            excess_agent_hours=b[_EXCESS] / US_PER_HOUR if pools else None,
            overuse_agent_hours=b[_OAGENT] / US_PER_HOUR, grants=b[_GRANTS],
            overuse_grants=b[_OGRANTS], offline_grants=b[_OFFGRANTS],
            refusals=dict(sorted(refusals.get((p, key, cls), {}).items())),
            hours=hours.get((p, key, cls)))
        for (p, key, cls), b in sorted(periods.items())
        # A group created for its limit before any seat has nothing to report.
        if b[_AGENT] or b[_PEAK] or b[_GRANTS] or (p, key, cls) in refusals
        or ((p, key, cls) in hours and hours[(p, key, cls)].active))
    return UsageReport(start=from_us(h0 * US_PER_HOUR), end=from_us(h1 * US_PER_HOUR), by=by,
                       period=period, as_of=as_of, rows=rows,
                       hours=history.over(h0, h1, stop))


class _HoursHistory:
    """The classes' stored hours (``view_usage_agent_hours``) around a report: per class,
    its balance after the last event of each hour, oldest first, from the last hour before
    the report on. The counts at an instant are the latest balance recorded before it,
    carried on to the instant with the domain's own arithmetic; the seats held do not change
    between two events, so that is exact (for an instant inside an hour, as long as no event
    of that hour came after it: a report's end is a whole hour, or ``as_of``, by default the
    last event).

    Events recorded at a period's first instant are the period's, as its usage rows count
    them: a period runs from just before its start to just before its end, or to ``stop``
    (``as_of``) included when that comes first.
    """

    def __init__(self, marks: Mapping[str, Sequence[tuple[int, Balance, int]]]) -> None:
        self._marks = marks
        self._times = {cls: [t for t, _, _ in got] for cls, got in marks.items()}

    @classmethod
    def read(cls, conn: Connection, h0: int, h1: int) -> _HoursHistory:
        a = usage_agent_hours.c
        before = select(a.agent_class, func.max(a.hour).label("hour")).where(
            a.hour < h0).group_by(a.agent_class).subquery()
        rows = [*conn.execute(select(usage_agent_hours).join(
                    before, (a.agent_class == before.c.agent_class) & (a.hour == before.c.hour))
                ).mappings(),
                *conn.execute(select(usage_agent_hours).where(
                    (a.hour >= h0) & (a.hour < h1))).mappings()]
        marks: dict[str, list[tuple[int, Balance, int]]] = {}
        for r in sorted(rows, key=lambda r: (r["agent_class"], r["hour"])):
            marks.setdefault(r["agent_class"], []).append(
                (r["as_of_us"], _balance_from_row(r), r["charged_us"]))
        return cls(marks)

    def at(self, agent_class: str, t: int, *, inclusive: bool = False) -> _HoursMark | None:
        """The class's hours at ``t`` (epoch microseconds), before the events recorded at
        ``t`` or, ``inclusive``, after them; None before it had any."""
        times = self._times[agent_class]
        i = (bisect_right(times, t) if inclusive else bisect_left(times, t)) - 1
        if i < 0:
            return None
        _, balance, charged = self._marks[agent_class][i]
        at = from_us(t)
        return _HoursMark(balance.added_us, balance.used_at(at), charged, balance.left_at(at))

    def _span(self, agent_class: str, t0: int, t1: int, stop: int) -> HoursUsage | None:
        """The class's hours from ``t0`` to ``t1``, or to ``stop`` if that comes first."""
        last = (self.at(agent_class, t1) if t1 <= stop
                else self.at(agent_class, stop, inclusive=True))
        if last is None:
            return None
        return HoursUsage.between(agent_class, self.at(agent_class, t0), last)

    def over(self, h0: int, h1: int, stop: int) -> tuple[HoursUsage, ...]:
        """Each class's hours over the hours [h0, h1) (none if ``stop`` is before them)."""
        t0 = h0 * US_PER_HOUR
        if stop < t0:
            return ()
        spans = (self._span(cls, t0, h1 * US_PER_HOUR, stop)
                 for cls in sorted(self._marks, key=_class_order))
        return tuple(s for s in spans if s is not None)

    def per_period(self, h0: int, h1: int, step: int,
                   stop: int) -> dict[tuple[int, str, str], HoursUsage]:
        """Per period of ``step`` hours in [h0, h1) that began by ``stop``, each class's
        hours, keyed as the class rows are (period's first hour, class, class)."""
        out = {}
        for cls in self._marks:
            for p in range(h0, h1, step):
                t0 = p * US_PER_HOUR
                if t0 > stop:
                    break
                got = self._span(cls, t0, t0 + step * US_PER_HOUR, stop)
                if got is not None:
                    out[(p, cls, cls)] = got
        return out


def _class_order(agent_class: str) -> int:
    return AGENT_CLASSES.index(agent_class) if agent_class in AGENT_CLASSES else len(AGENT_CLASSES)


__all__ = ["DIMENSIONS", "PERIODS", "HoursUsage", "UsageProjection", "UsageReport", "UsageRow",
           "usage_report"]
