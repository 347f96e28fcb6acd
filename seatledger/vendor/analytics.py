"""Reseller analytics: per customer, month and pool, what billing and abuse checks need,
projected from the vendor's store (``vendor_records``) exactly once.

Theory of operation. ``vendor_records.position`` is the store-wide order of arrival; one
tracked position (``vendor_analytics_tracking``) says how far the analytics tables include
it. :meth:`AnalyticsRunner.run_once` reads the records after it in batches; per customer it
replays them in record order against that customer's replay state (seats in use and limits
per pool, the current month's and hour's running totals), and then, in ONE transaction,
writes the rows the batch changed, each touched customer's state row and the new position
(compare-and-set, so two runners cannot both apply a batch). A crash leaves tables, states
and position as of the last commit; the next run carries on from there. Rebuilding deletes
every analytics row and replays from position 0.

What is counted (DESIGN.md section 6, the usage statement, per customer):
- Time is the customer's ledger record time (``timestamp``), which never runs backwards;
  periods are UTC months and hours. A customer's time runs up to its last imported record:
  seats held after that are not known yet, so nothing is counted beyond it.
- Pools are the agent classes and ``PRED+ACD`` (the two together; the licence may cap it).
- ``agent_us``: seat time. ``peak``: the most seats in use at once and the first instant it
  was reached; the count at an instant is the count after every record at that instant
  (one commit may grant and release together), so an instant counts once time moves past
  it, or as the pending last instant of an open period.
- ``over_limit_us`` and ``over_days``: time the pool was above its licensed limit and the
  UTC days on which it was; ``excess_us``: seat time above the limit (the over-use
  agent-hours: 2 seats held 3 hours on a limit of 1 are 3 over-use agent-hours).
- Per customer and month also the time and days any pool was over, records, and per export
  day the records it brought (exports received are the days with records; every export a
  master delivers is followed by its AuditTrailExported record, so no delivered day is
  empty).
- Refusals per class and reason.
- Per customer, month, class and site: seat time, the site's share of the class's over-use
  agent-hours (at each instant the excess above the class's own limit, shared in proportion
  to the seats each site holds) and grants. A chained master's seats are all at one site of
  its upstream master, so billing can take them off the upstream's bill.
- Each ``UpstreamLinked`` record (this customer's master chained under an upstream master,
  as a site there): the upstream's origin, the site, the CA hash, and from and until when
  (until the customer's next one). Billing matches them with the registry's licences
  (``seatledger.vendor.chaining``, docs/chaining.md).

The hourly rows (only hours with something to record: an event, or seats in use) carry the
count and limit at their end, so a chart fills the hours between them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ledger.domain.licence import Licence
from ledger.domain.values import AGENT_CLASSES, COMBINED_MEMBERS, COMBINED_POOL
from projections.engine import write_rows
from projections.timestamps import US_PER_DAY, US_PER_HOUR, to_us
from seatledger.vendor.records import StoredRecord, VendorRecords
from seatledger.vendor.registry import RegistryError, metadata

__all__ = ["POOLS", "AnalyticsError", "AnalyticsRunner", "ConcurrentAnalyticsError",
           "TABLES", "customer_months", "export_days", "hour_rows", "month_index",
           "month_label", "month_range", "parse_month", "refusals", "site_months", "states",
           "tracking", "upstream_links", "usage_months"]

POOLS: tuple[str, ...] = (*AGENT_CLASSES, COMBINED_POOL)
# The projection's tracking name, with the version of what it keeps: a store whose rows an
# earlier version wrote (tracked under another name) is replayed from the start on the first
# run, as a rebuild would (2: sites and upstream links).
NAME = "analytics-2"
DEFAULT_BATCH = 20_000

_Big = sa.BigInteger().with_variant(sa.Integer, "sqlite")

tracking = sa.Table(
    "vendor_analytics_tracking", metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("position", _Big, nullable=False),
)

states = sa.Table(
    "vendor_analytics_state", metadata,
    sa.Column("customer", sa.String(200), primary_key=True),
    sa.Column("record_id", _Big, nullable=False),  # the last record applied
    sa.Column("first_day", sa.String(10), nullable=True),  # first and last export day
    sa.Column("last_day", sa.String(10), nullable=True),
    sa.Column("last_us", _Big, nullable=True),  # record time of the last record
    sa.Column("state", sa.Text, nullable=False),  # the replay state, JSON
)

usage_months = sa.Table(
    "vendor_analytics_months", metadata,
    sa.Column("customer", sa.String(200), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),  # YYYY-MM (UTC)
    sa.Column("pool", sa.String(10), primary_key=True),
    sa.Column("agent_us", _Big, nullable=False),
    sa.Column("peak", sa.Integer, nullable=False),
    sa.Column("peak_us", _Big, nullable=True),
    sa.Column("over_limit_us", _Big, nullable=False),
    sa.Column("over_days", sa.Integer, nullable=False),
    sa.Column("excess_us", _Big, nullable=False),
    sa.Column("grants", sa.Integer, nullable=False),
    sa.Column("overuse_grants", sa.Integer, nullable=False),
    sa.Column("offline_grants", sa.Integer, nullable=False),
    sa.Column("start_count", sa.Integer, nullable=False),  # in use as the month began
    sa.Column("start_limit", sa.Integer, nullable=True),
    sa.Column("limit", sa.Integer, nullable=True),  # the limit at the end (so far)
    sa.Index("vendor_analytics_months_by_month", "month", "customer"),
)

customer_months = sa.Table(
    "vendor_analytics_customer_months", metadata,
    sa.Column("customer", sa.String(200), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("over_limit_us", _Big, nullable=False),  # any pool over its limit
    sa.Column("over_days", sa.Integer, nullable=False),
    sa.Column("records", sa.Integer, nullable=False),
    sa.Index("vendor_analytics_customer_months_by_month", "month", "customer"),
)

hour_rows = sa.Table(
    "vendor_analytics_hours", metadata,
    sa.Column("customer", sa.String(200), primary_key=True),
    sa.Column("pool", sa.String(10), primary_key=True),
    sa.Column("hour", _Big, primary_key=True),  # hours since the epoch (UTC)
    sa.Column("agent_us", _Big, nullable=False),
    sa.Column("peak", sa.Integer, nullable=False),
    sa.Column("excess_us", _Big, nullable=False),
    sa.Column("over_limit_us", _Big, nullable=False),
    sa.Column("end_count", sa.Integer, nullable=False),
    sa.Column("limit", sa.Integer, nullable=True),  # at the end of the hour
    sa.Index("vendor_analytics_hours_by_hour", "hour"),
)

refusals = sa.Table(
    "vendor_analytics_refusals", metadata,
    sa.Column("customer", sa.String(200), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("agent_class", sa.String(10), primary_key=True),
    sa.Column("reason", sa.String(40), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Index("vendor_analytics_refusals_by_month", "month", "customer"),
)

export_days = sa.Table(
    "vendor_analytics_days", metadata,
    sa.Column("customer", sa.String(200), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),  # the export day (UTC)
    sa.Column("records", sa.Integer, nullable=False),
    sa.Index("vendor_analytics_days_by_day", "day", "customer"),
)

site_months = sa.Table(
    "vendor_analytics_sites", metadata,
    sa.Column("customer", sa.String(200), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("agent_class", sa.String(10), primary_key=True),
    sa.Column("site", sa.String(200), primary_key=True),
    sa.Column("agent_us", _Big, nullable=False),
    sa.Column("excess_us", _Big, nullable=False),  # its share of the class's over-use
    sa.Column("grants", sa.Integer, nullable=False),
    sa.Index("vendor_analytics_sites_by_month", "month", "customer"),
)

upstream_links = sa.Table(
    "vendor_analytics_links", metadata,
    sa.Column("customer", sa.String(200), primary_key=True),  # the chained (downstream) one
    sa.Column("record_id", _Big, primary_key=True),  # its UpstreamLinked record
    sa.Column("upstream", sa.String(200), nullable=False),  # the upstream master's origin
    sa.Column("site", sa.String(200), nullable=False),  # the customer's site name there
    sa.Column("ca", sa.String(100), nullable=False),
    sa.Column("since_us", _Big, nullable=False),  # record time: first seen
    sa.Column("until_us", _Big, nullable=True),  # the customer's next UpstreamLinked
    sa.Index("vendor_analytics_links_by_upstream", "upstream", "site"),
)

# Rows only: deleted by a rebuild (tracking is reset instead).
TABLES: tuple[sa.Table, ...] = (states, usage_months, customer_months, hour_rows, refusals,
                                export_days, site_months, upstream_links)


class AnalyticsError(RegistryError):
    """The analytics cannot apply the store's records (an inconsistent history)."""


class ConcurrentAnalyticsError(AnalyticsError):
    """Another runner moved the analytics on first; this batch was not applied."""


# ------------------------------------------------------------------ months
def month_index(when_us: int) -> int:
    """The UTC month of an instant as year * 12 + month - 1."""
    d = datetime.fromtimestamp(when_us // 1_000_000, UTC)
    return d.year * 12 + d.month - 1


def month_label(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_range(index: int) -> tuple[int, int]:
    """[start, end) of a month in epoch microseconds."""
    start = datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
    nxt = index + 1
    end = datetime(nxt // 12, nxt % 12 + 1, 1, tzinfo=UTC)
    return to_us(start), to_us(end)


def parse_month(text: str) -> int:
    """``YYYY-MM`` as a month index. Raises ValueError."""
    year, sep, month = text.partition("-")
    if not (sep and len(year) == 4 and len(month) == 2 and year.isdigit() and month.isdigit()
            and 1 <= int(month) <= 12 and int(year) >= 1970):
        raise ValueError(f"bad month {text!r}: use YYYY-MM, e.g. 2026-03")
    return int(year) * 12 + int(month) - 1


def _pools_of(agent_class: str) -> tuple[str, ...]:
    return (agent_class, COMBINED_POOL) if agent_class in COMBINED_MEMBERS else (agent_class,)


# ------------------------------------------------------------------ replay state
class _Month:
    """One pool's running totals in the current month."""

    __slots__ = ("agent", "peak", "peak_at", "over", "days", "last_day", "excess", "grants",
                 "ogrants", "offgrants", "start_count", "start_limit")

    def __init__(self, start_count: int, start_limit: int | None) -> None:
        self.agent = self.peak = self.over = self.days = self.excess = 0
        self.peak_at: int | None = None
        self.last_day = -1
        self.grants = self.ogrants = self.offgrants = 0
        self.start_count, self.start_limit = start_count, start_limit

    def to_list(self) -> list[Any]:
        return [getattr(self, s) for s in self.__slots__]

    @classmethod
    def from_list(cls, values: Sequence[Any]) -> _Month:
        m = cls.__new__(cls)
        for s, v in zip(cls.__slots__, values, strict=True):
            setattr(m, s, v)
        return m


class _Hour:
    """One pool's running totals in the current hour."""

    __slots__ = ("agent", "peak", "excess", "over")

    def __init__(self) -> None:
        self.agent = self.peak = self.excess = self.over = 0

    def to_list(self) -> list[Any]:
        return [self.agent, self.peak, self.excess, self.over]

    @classmethod
    def from_list(cls, values: Sequence[Any]) -> _Hour:
        h = cls()
        h.agent, h.peak, h.excess, h.over = values
        return h


class _Sink:
    """Rows a batch produced, waiting for the flush."""

    def __init__(self) -> None:
        self.months: dict[tuple[str, str, str], tuple[Any, ...]] = {}
        self.customer_months: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.hours: dict[tuple[str, str, int], tuple[Any, ...]] = {}
        self.refusals: dict[tuple[str, str, str, str], int] = defaultdict(int)
        self.days: dict[tuple[str, str], int] = defaultdict(int)
        self.sites: dict[tuple[str, str, str, str], tuple[Any, ...]] = {}
        self.links: dict[tuple[str, int], tuple[Any, ...]] = {}


# A site's seats of one class in the current month: seats held, since when (the time up to
# which ``agent`` and ``excess`` count them), seat time, share of the class's over-use,
# grants, and the class's over-use per seat (:attr:`_Customer.per_seat`) at ``since``.
_N, _SINCE, _AGENT, _EXCESS, _GRANTS, _PER_SEAT = range(6)


class _Customer:
    """One customer's replay state: what its next record is applied to."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.record_id = 0
        self.t: int | None = None  # record time of the last record
        self.first_day: str | None = None
        self.last_day: str | None = None
        self.limits: dict[str, int] = {}
        self.count: dict[str, int] = {}
        self.month = 0
        self.m: dict[str, _Month] = {}
        self.any = [0, 0, -1, 0]  # over_limit_us, over_days, last over day, records
        self.hour = 0
        self.h: dict[str, _Hour] = {}
        # Per class and site, the current month's cells (see _N...): their seat time and
        # over-use share are counted when the site's count changes and as the month closes,
        # not at every record, so a customer with many sites costs no more per record.
        self.sites: dict[str, dict[str, list[Any]]] = {}
        # Per class, the month's over-use per seat in use so far: the integral of
        # excess / count over time. A site holding n seats from a to b has n times its
        # growth from a to b as its share.
        self.per_seat: dict[str, float] = {}
        # The last UpstreamLinked: record id, upstream origin, site, CA hash, record time.
        self.link: list[Any] | None = None

    # -------------------------------------------------------------- persistence
    def to_json(self) -> str:
        return json.dumps({
            "t": self.t, "limits": self.limits, "count": self.count,
            "month": self.month, "m": {p: a.to_list() for p, a in self.m.items()},
            "any": self.any, "hour": self.hour, "h": {p: a.to_list() for p, a in self.h.items()},
            "s": self.sites, "r": self.per_seat, "l": self.link,
        }, separators=(",", ":"))

    @classmethod
    def from_row(cls, row: Any) -> _Customer:
        c = cls(row.customer)
        c.record_id, c.first_day, c.last_day = row.record_id, row.first_day, row.last_day
        s = json.loads(row.state)
        c.t, c.limits, c.count = s["t"], s["limits"], s["count"]
        c.month, c.any, c.hour = s["month"], s["any"], s["hour"]
        c.m = {p: _Month.from_list(v) for p, v in s["m"].items()}
        c.h = {p: _Hour.from_list(v) for p, v in s["h"].items()}
        c.sites, c.per_seat, c.link = s["s"], s["r"], s["l"]
        return c

    def state_row(self) -> tuple[Any, ...]:
        return (self.name, self.record_id, self.first_day, self.last_day, self.t,
                self.to_json())

    # -------------------------------------------------------------- time
    def _pools(self) -> set[str]:
        return {p for p, n in self.count.items() if n} | set(self.limits)

    def start(self, t: int) -> None:
        self.t = t
        self.month = month_index(t)
        self.hour = t // US_PER_HOUR

    def advance(self, t: int, sink: _Sink) -> None:
        """Count the time from the last record up to ``t``: nothing changed in between."""
        s = self.t
        if s is None:
            self.start(t)
            return
        if t <= s:
            return
        self._accrue_months(s, t, sink)
        self._accrue_hours(s, t, sink)
        self.t = t

    def _accrue_months(self, s: int, t: int, sink: _Sink) -> None:
        while s < t:
            month_end = month_range(self.month)[1]
            e = min(t, month_end)
            dt = e - s
            any_over = False
            for pool in self._pools():
                count, limit = self.count.get(pool, 0), self.limits.get(pool)
                acc = self.m.get(pool)
                if acc is None:
                    acc = self.m[pool] = _Month(0, None)
                if count > acc.peak:
                    acc.peak, acc.peak_at = count, s
                acc.agent += count * dt
                if limit is not None and count > limit:
                    any_over = True
                    acc.over += dt
                    acc.excess += (count - limit) * dt
                    acc.days, acc.last_day = _count_days(acc.days, acc.last_day, s, e)
                    if pool != COMBINED_POOL:
                        self.per_seat[pool] = (self.per_seat.get(pool, 0.0)
                                               + (count - limit) * dt / count)
            if any_over:
                self.any[0] += dt
                self.any[1], self.any[2] = _count_days(self.any[1], self.any[2], s, e)
            if e == month_end:
                self._close_month(sink)
            s = e

    def _close_month(self, sink: _Sink) -> None:
        end = month_range(self.month)[1]
        self.emit_month(sink, until=end)
        self.month += 1
        self.m = {p: _Month(self.count.get(p, 0), self.limits.get(p)) for p in self._pools()}
        self.any = [0, 0, -1, 0]
        # Sites holding seats carry them into the new month; the others are done.
        carried = {cls: {site: [cell[_N], end, 0, 0, 0, 0.0] for site, cell in cells.items()
                         if cell[_N]} for cls, cells in self.sites.items()}
        self.sites = {cls: cells for cls, cells in carried.items() if cells}
        self.per_seat = {}

    def _accrue_hours(self, s: int, t: int, sink: _Sink) -> None:
        hour_end = (self.hour + 1) * US_PER_HOUR
        e = min(t, hour_end)
        self._hour_piece(s, e)
        if e < hour_end:
            return
        self.emit_hour(sink)
        # Hours without a record are not stored: their counts are the last stored hour's.
        self.hour = t // US_PER_HOUR
        self.h = {}
        self._hour_piece(max(hour_end, self.hour * US_PER_HOUR), t)

    def _hour_piece(self, s: int, e: int) -> None:
        dt = e - s
        if dt <= 0:
            return
        for pool in self._pools():
            count, limit = self.count.get(pool, 0), self.limits.get(pool)
            acc = self.h.get(pool)
            if acc is None:
                if not count:
                    continue
                acc = self.h[pool] = _Hour()
            if count > acc.peak:
                acc.peak = count
            acc.agent += count * dt
            if limit is not None and count > limit:
                acc.over += dt
                acc.excess += (count - limit) * dt

    def seat_at(self, agent_class: str, site: str, t: int, step: int) -> None:
        """One seat more (``step`` 1) or fewer (-1) of ``agent_class`` at ``site`` at ``t``."""
        per_seat = self.per_seat.get(agent_class, 0.0)
        cell = self.sites.setdefault(agent_class, {}).setdefault(
            site, [0, t, 0, 0, 0, per_seat])
        n = cell[_N]
        if n:
            cell[_AGENT] += n * (t - cell[_SINCE])
            cell[_EXCESS] += n * (per_seat - cell[_PER_SEAT])
        cell[_SINCE], cell[_PER_SEAT] = t, per_seat
        cell[_N] = n + step
        if step > 0:
            cell[_GRANTS] += 1
        elif cell[_N] < 0:
            raise AnalyticsError(
                f"customer {self.name!r}: record {self.record_id} releases a {agent_class} "
                f"seat at site {site!r}, which holds none; rebuild the analytics "
                "(records may be missing)")

    # -------------------------------------------------------------- rows
    def emit_month(self, sink: _Sink, *, until: int | None = None) -> None:
        """The current month's rows as of now (or, closing it, as of its end ``until``)."""
        label = month_label(self.month)
        pending = self.t is not None and month_index(self.t) == self.month
        for pool, a in self.m.items():
            count = self.count.get(pool, 0)
            peak, peak_at = a.peak, a.peak_at
            if pending and count > peak:  # the last instant, not yet settled
                peak, peak_at = count, self.t
            sink.months[(self.name, label, pool)] = (
                self.name, label, pool, a.agent, peak, peak_at, a.over, a.days, a.excess,
                a.grants, a.ogrants, a.offgrants, a.start_count, a.start_limit,
                self.limits.get(pool))
        sink.customer_months[(self.name, label)] = (self.name, label, self.any[0],
                                                    self.any[1], self.any[3])
        end = until if until is not None else self.t or 0
        for cls, cells in self.sites.items():
            per_seat = self.per_seat.get(cls, 0.0)
            for site, cell in cells.items():
                n = cell[_N]
                # Rounded down: the sites' shares never add up to more than the class's.
                excess = int(cell[_EXCESS] + n * (per_seat - cell[_PER_SEAT]))
                sink.sites[(self.name, label, cls, site)] = (
                    self.name, label, cls, site, cell[_AGENT] + n * (end - cell[_SINCE]),
                    excess, cell[_GRANTS])

    def emit_hour(self, sink: _Sink) -> None:
        for pool, a in self.h.items():
            count = self.count.get(pool, 0)
            sink.hours[(self.name, pool, self.hour)] = (
                self.name, pool, self.hour, a.agent, max(a.peak, count), a.excess, a.over,
                count, self.limits.get(pool))

    def touch_hour(self, pool: str) -> None:
        if pool not in self.h:
            self.h[pool] = _Hour()

    def touch_month(self, pool: str) -> _Month:
        acc = self.m.get(pool)
        if acc is None:
            acc = self.m[pool] = _Month(0, None)
        return acc


def _count_days(days: int, last_day: int, s: int, e: int) -> tuple[int, int]:
    """Days counted so far and the last one, after time over the limit in [s, e)."""
    first, last = max(s // US_PER_DAY, last_day + 1), (e - 1) // US_PER_DAY
    if last >= first:
        return days + last - first + 1, last
    return days, last_day


# ------------------------------------------------------------------ the projection
class _Record(Protocol):
    """What the replay reads of a record (a :class:`StoredRecord`)."""

    @property
    def record_id(self) -> int: ...

    @property
    def day(self) -> str: ...

    def event(self) -> Any: ...


class _Replay:
    """Applies one customer's events to its state."""

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink
        L = Licence
        handlers: dict[type, Callable[[_Customer, Any, int], None]] = {
            L.LicenceIssued: self._terms, L.LicenceAmended: self._terms,
            L.SeatGranted: self._granted, L.SeatReleased: self._released,
            L.SeatRefused: self._refused, L.UpstreamLinked: self._linked,
        }
        # Vendor-signed licences installed on the master set the terms too.
        installed = getattr(L, "LicenceInstalled", None)
        if isinstance(installed, type):
            handlers[installed] = self._terms
        self.handlers = handlers

    def apply(self, c: _Customer, record: _Record) -> None:
        if record.record_id <= c.record_id:
            raise AnalyticsError(
                f"customer {c.name!r}: record {record.record_id} arrived after record "
                f"{c.record_id}; records must be imported in order")
        e = record.event()
        t = to_us(e.timestamp)
        if c.t is not None and t < c.t:
            t = c.t  # recorded time never runs backwards; a stray one counts as no time
        c.advance(t, self.sink)
        c.record_id = record.record_id
        c.any[3] += 1
        day = record.day
        if c.first_day is None:
            c.first_day = day
        if c.last_day is None or day > c.last_day:
            c.last_day = day
        self.sink.days[(c.name, day)] += 1
        handler = self.handlers.get(type(e))
        if handler is not None:
            handler(c, e, t)

    def _terms(self, c: _Customer, e: Any, _t: int) -> None:
        limits = {str(k): int(v) for k, v in dict(e.limits).items()}
        total = getattr(e, "total_pred_acd", None)
        if total is not None:
            limits[COMBINED_POOL] = int(total)
        for pool in set(limits) | set(c.limits):
            if limits.get(pool) != c.limits.get(pool):
                c.touch_month(pool)
                c.touch_hour(pool)
        c.limits = limits

    def _granted(self, c: _Customer, e: Any, t: int) -> None:
        for pool in _pools_of(e.agent_class):
            c.count[pool] = c.count.get(pool, 0) + 1
            acc = c.touch_month(pool)
            acc.grants += 1
            if e.overuse:
                acc.ogrants += 1
            if e.offline:
                acc.offgrants += 1
            c.touch_hour(pool)
        c.seat_at(e.agent_class, e.site, t, +1)

    def _released(self, c: _Customer, e: Any, t: int) -> None:
        for pool in _pools_of(e.agent_class):
            left = c.count.get(pool, 0) - 1
            if left < 0:
                raise AnalyticsError(
                    f"customer {c.name!r}: record {c.record_id} releases a {e.agent_class} "
                    "seat none of which is held; rebuild the analytics "
                    "(records may be missing)")
            c.count[pool] = left
            c.touch_month(pool)
            c.touch_hour(pool)
        c.seat_at(e.agent_class, e.site, t, -1)

    def _refused(self, c: _Customer, e: Any, _t: int) -> None:
        self.sink.refusals[(c.name, month_label(c.month), str(e.agent_class),
                            str(e.reason))] += 1

    def _linked(self, c: _Customer, e: Any, t: int) -> None:
        """The customer's master is chained under an upstream from now on; the link before
        (if any) ends now."""
        previous = c.link
        if previous is not None:
            self.sink.links[(c.name, previous[0])] = (c.name, *previous, t)
        c.link = [c.record_id, str(e.upstream), str(e.site), str(e.ca), t]
        self.sink.links[(c.name, c.record_id)] = (c.name, *c.link, None)


Progress = Callable[[int], None]


class AnalyticsRunner:
    """Follows ``vendor_records`` into the analytics tables, exactly once.

    ``batch_hook(stage, n)`` is called with ``("applied", n)`` before the n-th batch
    commits; tests raise from it to simulate a crash.
    """

    def __init__(self, records: VendorRecords, *, batch_size: int = DEFAULT_BATCH,
                 batch_hook: Callable[[str, int], None] | None = None) -> None:
        self.records = records
        self.engine: Engine = records.engine
        self.batch_size = batch_size
        self.batch_hook = batch_hook
        self._customers: dict[str, _Customer] = {}
        self._position: int | None = None
        self._batches = 0

    def position(self) -> int:
        """The last ``vendor_records`` position the analytics include."""
        with self.engine.connect() as conn:
            return _read_position(conn)

    def pending(self) -> int:
        """Records not applied yet."""
        from seatledger.vendor.records import records as table
        with self.engine.connect() as conn:
            after = _read_position(conn)
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)
                                    .where(table.c.position > after)).scalar() or 0)

    def run_once(self, progress: Progress | None = None) -> int:
        """Apply every record not applied yet; returns how many.

        Raises ConcurrentAnalyticsError if another runner committed first (nothing of this
        batch is kept; run again), AnalyticsError for a history it cannot apply.
        """
        done = 0
        while True:
            with self.engine.connect() as conn:
                stored = _read_position(conn)
            if stored != self._position:
                self._customers = {}  # another runner moved on: memory is stale
                self._position = stored
            batch = list(self.records.read(after_position=stored, limit=self.batch_size))
            if not batch:
                return done
            try:
                self._apply(stored, batch)
            except BaseException:
                self._customers = {}
                self._position = None
                raise
            done += len(batch)
            if progress is not None:
                progress(done)
            if len(batch) < self.batch_size:
                return done

    def rebuild(self, progress: Progress | None = None) -> int:
        """Delete every analytics row and replay the whole store. Returns records applied."""
        with self.engine.begin() as conn:
            _clear(conn)
            conn.execute(tracking.delete().where(tracking.c.name == NAME))
        self._customers = {}
        self._position = None
        return self.run_once(progress)

    def _apply(self, start: int, batch: list[StoredRecord]) -> None:
        sink = _Sink()
        replay = _Replay(sink)
        with self.engine.begin() as conn:
            if _read_position(conn) != start:  # checked again as the position moves
                raise ConcurrentAnalyticsError(
                    "another analytics runner applied these records first; run again")
            if start == 0:
                # Nothing applied yet under this NAME: rows an earlier version of the
                # projection left are replaced, in this batch's transaction, not added to.
                _clear(conn)
                self._customers = {}
            self._load(conn, {r.customer for r in batch})
            touched: dict[str, _Customer] = {}
            customers = self._customers
            for record in batch:
                c = customers[record.customer]
                touched[c.name] = c
                replay.apply(c, record)
            for c in touched.values():
                c.emit_month(sink)
                c.emit_hour(sink)
            write_rows(conn, states, [c.state_row() for c in touched.values()], mode="upsert")
            write_rows(conn, usage_months, list(sink.months.values()), mode="upsert")
            write_rows(conn, customer_months, list(sink.customer_months.values()),
                       mode="upsert")
            write_rows(conn, hour_rows, list(sink.hours.values()), mode="upsert")
            write_rows(conn, refusals, [(*k, n) for k, n in sink.refusals.items()],
                       mode="upsert", increment=("count",))
            write_rows(conn, export_days, [(*k, n) for k, n in sink.days.items()],
                       mode="upsert", increment=("records",))
            write_rows(conn, site_months, list(sink.sites.values()), mode="upsert")
            write_rows(conn, upstream_links, list(sink.links.values()), mode="upsert")
            end = batch[-1].position
            _move_position(conn, start, end)
            self._batches += 1
            if self.batch_hook is not None:
                self.batch_hook("applied", self._batches)
        self._position = end

    def _load(self, conn: Connection, names: Iterable[str]) -> None:
        missing = [n for n in names if n not in self._customers]
        for i in range(0, len(missing), 500):
            chunk = missing[i:i + 500]
            for row in conn.execute(sa.select(states).where(states.c.customer.in_(chunk))):
                self._customers[row.customer] = _Customer.from_row(row)
        for n in missing:
            if n not in self._customers:
                self._customers[n] = _Customer(n)


def _clear(conn: Connection) -> None:
    """Delete every analytics row, and the tracking of earlier versions of the projection."""
    for table in TABLES:
        conn.execute(table.delete())
    conn.execute(tracking.delete().where(tracking.c.name != NAME))


def _read_position(conn: Connection) -> int:
    found = conn.execute(sa.select(tracking.c.position).where(tracking.c.name == NAME)).scalar()
    return 0 if found is None else int(found)


def _move_position(conn: Connection, start: int, end: int) -> None:
    """Compare-and-set the position from ``start`` to ``end``, in the batch's transaction.

    Raises ConcurrentAnalyticsError if it is not at ``start`` any more.
    """
    moved = conn.execute(tracking.update().where(
        (tracking.c.name == NAME) & (tracking.c.position == start))
        .values(position=end)).rowcount
    if moved == 1:
        return
    if start == 0 and _read_position(conn) == 0:
        # The first batch ever creates the row; a second runner doing the same loses on
        # the primary key.
        try:
            with conn.begin_nested():
                conn.execute(tracking.insert().values(name=NAME, position=end))
            return
        except sa.exc.IntegrityError:
            pass
    raise ConcurrentAnalyticsError(
        "another analytics runner applied these records first; run again")
