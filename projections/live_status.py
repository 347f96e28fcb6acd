"""Live status: per pool (class, or PRED+ACD) in use, limit, over-use, grace state and
deadline, enforced or not; per site connected or not, seats, local limits, last seen.

The projection follows the recorded facts, without re-deciding anything: pools change only
through :func:`ledger.domain.pools.apply_pool_event`, the same transition the licence
aggregate's events apply, so the two cannot disagree. It keeps the whole view in memory (a
few rows per pool and site) and writes the rows a batch changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs
from sqlalchemy import Connection, delete, inspect, select

from ledger.domain.hours import Balance, HoursEventKind, apply_hours_event
from ledger.domain.licence import Licence
from ledger.domain.pools import Pool, PoolEventKind, PoolState, apply_pool_event, pool_limits
from ledger.domain.values import AGENT_CLASSES, ReleaseReason, SiteState

from .base import Handler, Projection
from .engine import upsert, write_rows
from .labels import Labels, LabelSeal, labels_for
from .schema import (
    TABLES_BY_PROJECTION,
    status_hours,
    status_licence,
    status_pools,
    status_sites,
)
from .timestamps import US_PER_HOUR, from_us, maybe_from_us, maybe_to_us, to_us

# Releases the site itself asked for; the others are the master's doing.
_SITE_RELEASES = frozenset({ReleaseReason.LOGOFF, ReleaseReason.RECONCILED})
_GRANTED, _RELEASED = PoolEventKind.SEAT_GRANTED, PoolEventKind.SEAT_RELEASED
_HOURS_GRANTED, _HOURS_RELEASED = HoursEventKind.GRANTED, HoursEventKind.RELEASED


# ------------------------------------------------------------------ answers
@attrs.frozen
class PoolStatus:
    pool: str
    limit: int
    in_use: int
    state: PoolState
    deadline: datetime | None
    overuse: bool
    enforced: bool
    severity: int
    opened_at: datetime | None
    closed_at: datetime | None


@attrs.frozen
class SiteStatus:
    site: str
    status: SiteState
    since: datetime | None
    last_seen: datetime | None
    seats: int
    seats_by_class: Mapping[str, int]
    local_limits: Mapping[str, int]


@attrs.frozen
class Status:
    """The live status view as of ``last_event_at`` (the newest event applied)."""

    licence_id: str
    customer: str
    limits: Mapping[str, int]
    total_pred_acd: int | None
    expires_at: datetime
    expired: bool
    grace_seconds: int
    rearm_seconds: int
    ceiling_percent: int | None
    cutoff_seconds: int
    last_event_at: datetime
    pools: tuple[PoolStatus, ...]
    sites: tuple[SiteStatus, ...]
    licensed: bool = True  # False: no valid licence, the trial rule applies to new seats
    serial: int = 0
    notice: str = ""  # the latest warning about the licence or the export obligation
    export_overdue: bool = False
    # Agent-hours of the classes with an hours allowance, as of their own ``as_of``: a
    # balance's ``left_at(now)`` is what is left now (the seats held keep burning).
    hours: tuple[Balance, ...] = ()

    @property
    def seats_in_use(self) -> int:
        return sum(s.seats for s in self.sites)

    @property
    def cut_off_seats(self) -> tuple[SiteStatus, ...]:
        """The sites cut off that still hold seats: the master keeps counting them until the
        site reconnects and syncs, an operator releases them, or the site is revoked."""
        return tuple(s for s in self.sites if s.status == SiteState.CUT_OFF and s.seats)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON (datetimes left as datetimes)."""
        data = attrs.asdict(self, recurse=True)
        data["limits"] = dict(self.limits)
        data["seats_in_use"] = self.seats_in_use
        return data


# ------------------------------------------------------------------ memory state
def _pool_row(p: Pool) -> tuple[Any, ...]:
    """As a ``view_status_pools`` row (column order)."""
    return (p.name, p.limit, p.in_use, str(p.state), maybe_to_us(p.deadline),
            maybe_to_us(p.opened_at), maybe_to_us(p.closed_at), p.overuse, p.severity,
            p.enforced)


def _hours_row(b: Balance) -> tuple[Any, ...]:
    """As a ``view_status_hours`` row (column order)."""
    return (b.agent_class, to_us(b.as_of), b.left_us, b.held, b.base_us, b.added_us,
            b.notified, b.exhausted)


def _hours_from_row(r: Any) -> Balance:
    return Balance(r["agent_class"], from_us(r["as_of_us"]), r["left_us"], r["held"],
                   r["base_us"], r["added_us"], r["notified"], bool(r["exhausted"]))


def _hours_order(b: Balance) -> int:
    return AGENT_CLASSES.index(b.agent_class)


def _pool_view(p: Pool) -> PoolStatus:
    return PoolStatus(pool=p.name, limit=p.limit, in_use=p.in_use, state=p.state,
                      deadline=p.deadline, overuse=p.overuse, enforced=p.enforced,
                      severity=p.severity, opened_at=p.opened_at, closed_at=p.closed_at)


class _Site:
    __slots__ = ("name", "status", "since", "last_seen", "seats", "local_limits")

    def __init__(self, name: str, local_limits: Mapping[str, int]) -> None:
        self.name = name
        self.status = SiteState.NEW
        self.since: datetime | None = None
        self.last_seen: datetime | None = None
        self.seats: dict[str, int] = {}
        self.local_limits = dict(local_limits)

    def row(self, sites: LabelSeal) -> tuple[Any, ...]:
        """As a ``view_status_sites`` row (column order), its name sealed with ``sites``."""
        return (sites.seal(self.name), str(self.status), maybe_to_us(self.since),
                maybe_to_us(self.last_seen), sum(self.seats.values()),
                json.dumps(self.seats, sort_keys=True),
                json.dumps(self.local_limits, sort_keys=True))

    def view(self) -> SiteStatus:
        return SiteStatus(site=self.name, status=self.status, since=self.since,
                          last_seen=self.last_seen, seats=sum(self.seats.values()),
                          seats_by_class=dict(sorted(self.seats.items())),
                          local_limits=dict(sorted(self.local_limits.items())))


class LiveStatusProjection(Projection):
    """Live concurrency and grace status (DESIGN.md section 6)."""

    name = "status"
    tables = TABLES_BY_PROJECTION["status"]

    def __init__(self, labels: Labels | None = None) -> None:
        super().__init__(labels)
        self._reset()

    def _reset(self) -> None:
        self.licence: dict[str, Any] | None = None
        self.pools: dict[str, Pool] = {}
        self.sites: dict[str, _Site] = {}
        self.hours: dict[str, Balance] = {}
        self._pools_for: dict[str, tuple[str, ...]] = {}
        self._dirty_licence = False
        self._dirty_pools: set[str] = set()
        self._dropped_pools: set[str] = set()
        self._dirty_sites: set[str] = set()
        self._last_event: datetime | None = None
        self._site_views: dict[str, SiteStatus] = {}
        self.published: Status | None = None

    # ---------------------------------------------------------------- persistence
    def load(self, conn: Connection) -> None:
        self._reset()
        row = conn.execute(select(status_licence)).mappings().first()
        if row is not None:
            self.licence = dict(row)
            self.licence["limits"] = json.loads(row["limits"])
            self.licence["customer"] = self.labels.customer.open(row["customer"])
        for r in conn.execute(select(status_pools)).mappings():
            self.pools[r["pool"]] = attrs.evolve(
                Pool.new(r["pool"], r["limit"], r["in_use"]), state=PoolState(r["state"]),
                deadline=maybe_from_us(r["deadline_us"]),
                opened_at=maybe_from_us(r["opened_us"]), closed_at=maybe_from_us(r["closed_us"]),
                overuse=bool(r["overuse"]), severity=r["severity"], enforced=bool(r["enforced"]))
        for r in conn.execute(select(status_sites)).mappings():
            site = _Site(self.labels.site.open(r["site"]), json.loads(r["local_limits"]))
            site.status = SiteState(r["status"])
            site.since = maybe_from_us(r["since_us"])
            site.last_seen = maybe_from_us(r["last_seen_us"])
            site.seats = json.loads(r["seats_by_class"])
            self.sites[site.name] = site
        for r in conn.execute(select(status_hours)).mappings():
            self.hours[r["agent_class"]] = _hours_from_row(r)
        self._index_pools()
        self._site_views = {name: site.view() for name, site in self.sites.items()}
        self.published = self.current()

    def flush(self, conn: Connection) -> None:
        if self._last_event is not None and self.licence is not None:
            self.licence["last_event_us"] = to_us(self._last_event)
            self._dirty_licence = True
            self._last_event = None
        if self._dirty_licence and self.licence is not None:
            row = dict(self.licence, id=1, limits=json.dumps(self.licence["limits"]),
                       customer=self.labels.customer.seal(self.licence["customer"]))
            upsert(conn, status_licence, [row])
        if self._dropped_pools:
            conn.execute(delete(status_pools).where(status_pools.c.pool.in_(self._dropped_pools)))
        write_rows(conn, status_pools, [_pool_row(p) for p in self.pools.values()], mode="upsert")
        write_rows(conn, status_hours, [_hours_row(b) for b in self.hours.values()],
                   mode="upsert")
        dirty = [self.sites[n] for n in sorted(self._dirty_sites)]
        write_rows(conn, status_sites, [site.row(self.labels.site) for site in dirty],
                   mode="upsert")
        for site in dirty:
            self._site_views[site.name] = site.view()
        self._dirty_licence = False
        self._dirty_pools.clear()
        self._dropped_pools.clear()
        self._dirty_sites.clear()
        # An immutable copy, swapped in whole: other threads may read it at any time.
        self.published = self.current()

    # ---------------------------------------------------------------- handlers
    def handlers(self) -> Mapping[type, Handler]:
        L = Licence
        return {
            L.LicenceIssued: self._issued, L.LicenceAmended: self._amended,
            L.TrialStarted: self._trial, L.LicenceInstalled: self._installed,
            L.LicenceNoticeIssued: self._licence_notice,
            L.ExportOverdue: self._export_overdue, L.ExportObligationRestored: self._export_overdue,
            L.LicenceExpired: self._expired, L.SiteEnrolled: self._enrolled,
            L.SiteRevoked: self._site_status, L.SiteConnected: self._site_status,
            L.SiteReconnected: self._site_status, L.SiteDisconnected: self._site_status,
            L.SiteCutOff: self._site_status, L.SeatGranted: self._granted,
            L.SeatReleased: self._released, L.SeatRefused: self._refused,
            L.OveruseStarted: self._pool_changed, L.OveruseEnded: self._pool_changed,
            L.AbuseNoticeIssued: self._pool_changed, L.GraceExpired: self._pool_changed,
            L.EnforcementStarted: self._pool_changed, L.GraceRearmed: self._pool_changed,
            L.ClockStepped: self._touch, L.AuditCheckpointSigned: self._touch,
            L.AuditTrailExported: self._touch,
            L.HoursNoticeIssued: self._hours_changed, L.HoursExhausted: self._hours_changed,
            L.HoursCharged: self._hours_changed, L.HoursOverdrawn: self._touch,
        }

    def _touch(self, _nid: int, e: Any) -> None:
        self._last_event = e.timestamp

    def _terms(self, e: Any) -> None:
        assert self.licence is not None
        self._dirty_licence = True
        self.licence.update(
            limits=dict(e.limits), total_pred_acd=e.total_pred_acd, expires_us=to_us(e.expires_at),
            grace_seconds=e.grace_seconds, rearm_seconds=e.rearm_seconds,
            ceiling_percent=e.ceiling_percent)
        wanted = pool_limits(e.limits, e.total_pred_acd)
        for name in list(self.pools):
            if name not in wanted:
                del self.pools[name]
                self._dropped_pools.add(name)
        for name, limit in wanted.items():
            pool = self.pools.get(name)
            if pool is None:
                pool = Pool.new(name, limit)
                self._dropped_pools.discard(name)
            # Recounted from the sites' seats, as the aggregate does on new terms.
            in_use = sum(site.seats.get(c, 0) for site in self.sites.values()
                         for c in pool.members)
            self.pools[name] = apply_pool_event(pool, PoolEventKind.LIMIT, e.occurred_at,
                                                limit=limit, in_use=in_use)
            self._dirty_pools.add(name)
        self._index_pools()

    def _index_pools(self) -> None:
        self._pools_for = {c: tuple(p.name for p in self.pools.values() if c in p.members)
                           for c in AGENT_CLASSES}

    def _add_hours(self, e: Any) -> None:
        """A licence added agent-hours (none in events of earlier versions)."""
        for cls, n in (getattr(e, "hours", None) or {}).items():
            balance = self.hours.get(cls)
            if balance is None:
                held = sum(site.seats.get(cls, 0) for site in self.sites.values())
                balance = Balance(cls, e.timestamp, held=held)
            self.hours[cls] = apply_hours_event(balance, HoursEventKind.ADDED, e.timestamp,
                                                added_us=n * US_PER_HOUR)

    def _hours_changed(self, nid: int, e: Any) -> None:
        self.hours[e.agent_class] = e.apply_to(self.hours[e.agent_class])
        self._touch(nid, e)

    def _issued(self, nid: int, e: Any) -> None:
        # Terms set directly are in force only if the event says so (earlier versions'
        # operator-issued licences do not: they run in trial).
        self.licence = {"licence_id": e.licence_id, "customer": e.customer, "expired": False,
                        "cutoff_seconds": e.cutoff_seconds, "last_event_us": to_us(e.timestamp),
                        "licensed": bool(getattr(e, "in_force", False)), "serial": 0,
                        "notice": "", "export_overdue": False}
        self._terms(e)
        self._add_hours(e)
        self._touch(nid, e)

    def _trial(self, nid: int, e: Any) -> None:
        self.licence = {"licence_id": "", "customer": "", "expired": False,
                        "cutoff_seconds": e.cutoff_seconds, "last_event_us": to_us(e.timestamp),
                        "limits": {}, "total_pred_acd": None, "expires_us": to_us(e.timestamp),
                        "grace_seconds": 0, "rearm_seconds": 0, "ceiling_percent": None,
                        "licensed": False, "serial": 0, "notice": "", "export_overdue": False}
        self._dirty_licence = True
        self._touch(nid, e)

    def _installed(self, nid: int, e: Any) -> None:
        assert self.licence is not None
        self._terms(e)
        self._add_hours(e)
        in_force = e.expires_at > e.timestamp
        self.licence.update(licence_id=e.licence_id, customer=e.customer, serial=e.serial,
                            licensed=in_force, expired=not in_force, notice="")
        self._touch(nid, e)

    def _licence_notice(self, nid: int, e: Any) -> None:
        assert self.licence is not None
        self.licence["notice"] = e.detail
        self._dirty_licence = True
        self._touch(nid, e)

    def _export_overdue(self, nid: int, e: Any) -> None:
        assert self.licence is not None
        overdue = type(e).__name__ == "ExportOverdue"
        self.licence["export_overdue"] = overdue
        if not overdue:
            self.licence["notice"] = ""
        self._dirty_licence = True
        self._touch(nid, e)

    def _amended(self, nid: int, e: Any) -> None:
        self._terms(e)
        assert self.licence is not None
        if e.expires_at > e.timestamp:
            self.licence["expired"] = False
        self._touch(nid, e)

    def _expired(self, nid: int, e: Any) -> None:
        assert self.licence is not None
        self.licence["expired"] = True
        self.licence["licensed"] = False
        self._dirty_licence = True
        self._touch(nid, e)

    def _enrolled(self, nid: int, e: Any) -> None:
        # Re-enrolling a revoked site starts it empty, as the aggregate does; like the
        # aggregate, the pools keep counting any seat it still had until they are recounted
        # (on new terms).
        self.sites[e.site] = _Site(e.site, e.local_limits)
        self._dirty_sites.add(e.site)
        self._touch(nid, e)

    def _site_status(self, nid: int, e: Any) -> None:
        site = self.sites[e.site]
        at = e.timestamp
        site.status = e.new_status
        if site.status in (SiteState.CONNECTED, SiteState.DISCONNECTED):
            site.last_seen = at
        site.since = at
        self._dirty_sites.add(e.site)
        self._touch(nid, e)

    # Seat events are most of the log: these two are written out for speed. Pools are few,
    # so flush() writes them all and they need no dirty marks here.
    def _granted(self, _nid: int, e: Any) -> None:
        site = self.sites[e.site]
        cls = e.agent_class
        seats = site.seats
        seats[cls] = seats.get(cls, 0) + 1
        pools, at = self.pools, e.occurred_at
        for name in self._pools_for.get(cls, ()):
            pools[name] = apply_pool_event(pools[name], _GRANTED, at)
        if self.hours and cls in self.hours:
            self.hours[cls] = apply_hours_event(self.hours[cls], _HOURS_GRANTED, e.timestamp)
        self._dirty_sites.add(e.site)
        self._last_event = e.timestamp
        if not e.offline:
            site.last_seen = e.timestamp

    def _released(self, _nid: int, e: Any) -> None:
        site = self.sites[e.site]
        cls = e.agent_class
        seats = site.seats
        left = seats[cls] - 1
        if left:
            seats[cls] = left
        else:
            del seats[cls]
        pools, at = self.pools, e.occurred_at
        for name in self._pools_for.get(cls, ()):
            pools[name] = apply_pool_event(pools[name], _RELEASED, at)
        if self.hours and cls in self.hours:
            self.hours[cls] = apply_hours_event(self.hours[cls], _HOURS_RELEASED, e.timestamp)
        self._dirty_sites.add(e.site)
        self._last_event = e.timestamp
        if not e.offline and e.reason in _SITE_RELEASES:
            site.last_seen = e.timestamp

    def _refused(self, nid: int, e: Any) -> None:
        site = self.sites.get(e.site)
        if site is not None:
            site.last_seen = e.timestamp
            self._dirty_sites.add(e.site)
        self._touch(nid, e)

    def _pool_changed(self, nid: int, e: Any) -> None:
        self.pools[e.pool] = e.apply_to(self.pools[e.pool])
        self._dirty_pools.add(e.pool)
        self._touch(nid, e)

    # ---------------------------------------------------------------- answers
    def current(self) -> Status | None:
        """The view as of the last flush or load, or None before a licence."""
        lic = self.licence
        if lic is None:
            return None
        return Status(
            licence_id=lic["licence_id"], customer=lic["customer"], limits=dict(lic["limits"]),
            total_pred_acd=lic["total_pred_acd"], expires_at=from_us(lic["expires_us"]),
            expired=bool(lic["expired"]), grace_seconds=lic["grace_seconds"],
            rearm_seconds=lic["rearm_seconds"], ceiling_percent=lic["ceiling_percent"],
            cutoff_seconds=lic["cutoff_seconds"], last_event_at=from_us(lic["last_event_us"]),
            pools=tuple(sorted((_pool_view(p) for p in self.pools.values()),
                               key=lambda p: _pool_order(p.pool))),
            sites=tuple(self._site_views[n] for n in sorted(self._site_views)),
            licensed=bool(lic["licensed"]), serial=lic["serial"], notice=lic["notice"],
            export_overdue=bool(lic["export_overdue"]),
            hours=tuple(sorted(self.hours.values(), key=_hours_order)))


def read_status(conn: Connection) -> Status | None:
    """The live status view as stored, or None if no licence has been issued."""
    lic = conn.execute(select(status_licence)).mappings().first()
    if lic is None:
        return None
    pools = conn.execute(select(status_pools)).mappings().all()
    sites = conn.execute(select(status_sites)).mappings().all()
    return attrs.evolve(_status(lic, pools, sites, labels_for(conn)), hours=read_hours(conn))


def read_hours(conn: Connection) -> tuple[Balance, ...]:
    """The agent-hours balances as the live-status view stores them (none if the view has no
    tables here)."""
    if not inspect(conn).has_table(status_hours.name):
        return ()
    return tuple(sorted((_hours_from_row(r) for r in
                         conn.execute(select(status_hours)).mappings()), key=_hours_order))


def _pool_order(name: str) -> tuple[int, str]:
    return (AGENT_CLASSES.index(name) if name in AGENT_CLASSES else len(AGENT_CLASSES), name)


def _status(lic: Any, pools: Any, sites: Any, labels: Labels) -> Status:
    site_name = labels.site.open
    return Status(
        licence_id=lic["licence_id"], customer=labels.customer.open(lic["customer"]),
        limits=json.loads(lic["limits"]),
        total_pred_acd=lic["total_pred_acd"], expires_at=from_us(lic["expires_us"]),
        expired=bool(lic["expired"]), grace_seconds=lic["grace_seconds"],
        rearm_seconds=lic["rearm_seconds"], ceiling_percent=lic["ceiling_percent"],
        cutoff_seconds=lic["cutoff_seconds"], last_event_at=from_us(lic["last_event_us"]),
        pools=tuple(sorted(
            (PoolStatus(pool=p["pool"], limit=p["limit"], in_use=p["in_use"],
                        state=PoolState(p["state"]),
                        deadline=maybe_from_us(p["deadline_us"]), overuse=bool(p["overuse"]),
                        enforced=bool(p["enforced"]), severity=p["severity"],
                        opened_at=maybe_from_us(p["opened_us"]),
                        closed_at=maybe_from_us(p["closed_us"]))
             for p in pools), key=lambda p: _pool_order(p.pool))),
        sites=tuple(sorted(
            (SiteStatus(site=site_name(s["site"]), status=SiteState(s["status"]),
                        since=maybe_from_us(s["since_us"]),
                        last_seen=maybe_from_us(s["last_seen_us"]), seats=s["seats"],
                        seats_by_class=json.loads(s["seats_by_class"]),
                        local_limits=json.loads(s["local_limits"]))
             for s in sites), key=lambda s: s.site)),
        licensed=bool(lic["licensed"]), serial=lic["serial"], notice=lic["notice"],
        export_overdue=bool(lic["export_overdue"]),
    )


__all__ = ["LiveStatusProjection", "PoolStatus", "SiteStatus", "Status", "read_hours",
           "read_status"]
