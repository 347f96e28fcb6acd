"""The Licence aggregate: one licence, its sites and seats, and every event they produce.

A master serves one licence, so one aggregate holds all of its state; every command is
decided against it and recorded as events on it, which gives a single total order and lets
a batch of commands from many connections be committed in one transaction.

Commands check their rules first and only then trigger events; state changes only in the
events' ``apply`` methods. Every method that records something takes ``now``, the ledger's
recorded time (see :class:`ledger.clock.TimeKeeper`); the grace rules live in
:mod:`ledger.grace`.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID, uuid5

import attrs
from eventsourcing.domain import Aggregate
from eventsourcing.utils import register_topic

from ledger.domain import grace
from ledger.domain.values import (
    AGENT_CLASSES,
    COMBINED_MEMBERS,
    COMBINED_POOL,
    DEFAULT_CUTOFF_SECONDS,
    DEFAULT_POLICY,
    MAX_LICENCE_DAYS,
    MIN_LICENCE_SEATS,
    GracePolicy,
    RefusalReason,
    ReleaseReason,
    Severity,
    licence_total,
)
from ledger.errors import (
    LicenceError,
    LicenceTooSmallError,
    SiteExistsError,
    UnknownSeatError,
    UnknownSiteError,
)
from ledger.persistence.codec import register_value_class

# Site names travel in certificates as DNS names, so they are DNS labels.
_SITE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")

LICENCE_ID = uuid5(UUID("6f1c1a52-52a5-4d8e-a0b5-0c5e1c8a7d10"), "seatledger-licence")

NEW = "new"
CONNECTED = "connected"
DISCONNECTED = "disconnected"
CUT_OFF = "cut_off"
REVOKED = "revoked"


@register_value_class(1)
@attrs.frozen
class Seat:
    """One active user of one class, held by a site."""

    number: int
    agent_class: str
    tenant: str
    campaign: str
    granted_at: datetime
    overuse: bool = False
    offline: bool = False


@register_value_class(2)
@attrs.define
class Site:
    """An enrolled slave installation, as the master sees it."""

    name: str
    fingerprint: str
    local_limits: dict[str, int]
    status: str = NEW
    since: datetime | None = None
    last_seq: int = 0
    seats: dict[str, Seat] = attrs.Factory(dict)

    def in_use(self, agent_class: str) -> int:
        return sum(1 for s in self.seats.values() if s.agent_class == agent_class)


@attrs.frozen
class Grant:
    """Outcome of a granted seat (also returned for an idempotent repeat)."""

    site: str
    user: str
    seat: int
    agent_class: str
    overuse: bool
    deadline: datetime | None
    repeated: bool = False
    opened: tuple[str, ...] = ()  # pools whose grace window this grant opened


@attrs.frozen
class Refusal:
    """Outcome of a refused seat, with the recorded reason code."""

    site: str
    user: str
    reason: str
    detail: str


@attrs.frozen
class Release:
    site: str
    user: str
    seat: int
    reason: str


@attrs.frozen
class OfflineEvent:
    """A seat event a site journalled while it could not reach the master."""

    seq: int
    kind: str  # "grant" | "release"
    user: str
    agent_class: str
    occurred_at: datetime
    tenant: str = ""
    campaign: str = ""


@attrs.frozen
class HeldSeat:
    user: str
    agent_class: str
    tenant: str = ""
    campaign: str = ""


@attrs.frozen
class SyncResult:
    applied: int
    skipped: int
    reconciled: int


@attrs.frozen
class Notice:
    """An abuse notice to broadcast to every connected site."""

    pool: str
    severity: int
    deadline: datetime | None
    detail: str


class Licence(Aggregate):
    """The licence, its sites and seats."""

    # ------------------------------------------------------------------ events
    class Event(Aggregate.Event):
        occurred_at: datetime

    class LicenceIssued(Aggregate.Created):
        occurred_at: datetime
        licence_id: str
        customer: str
        limits: dict[str, int]
        total_pred_acd: int | None
        expires_at: datetime
        grace_seconds: int
        rearm_seconds: int
        ceiling_percent: int | None
        cutoff_seconds: int

    class LicenceAmended(Event):
        limits: dict[str, int]
        total_pred_acd: int | None
        expires_at: datetime
        grace_seconds: int
        rearm_seconds: int
        ceiling_percent: int | None

        def apply(self, licence: Licence) -> None:
            licence.limits = dict(self.limits)
            licence.total_pred_acd = self.total_pred_acd
            licence.expires_at = self.expires_at
            licence.policy = GracePolicy(
                self.grace_seconds, self.rearm_seconds, self.ceiling_percent
            )
            licence._rebuild_pools()
            if self.expires_at > self.timestamp:
                licence.expired = False

    class LicenceExpired(Event):
        def apply(self, licence: Licence) -> None:
            licence.expired = True

    class SiteEnrolled(Event):
        site: str
        fingerprint: str
        local_limits: dict[str, int]

        def apply(self, licence: Licence) -> None:
            licence.sites[self.site] = Site(self.site, self.fingerprint, dict(self.local_limits))

    class _SiteStatusChanged(Event):
        """A site's connection status changed; each subclass names the status it sets."""

        site: str
        new_status: ClassVar[str]

        def apply(self, licence: Licence) -> None:
            site = licence.sites[self.site]
            site.status = self.new_status
            site.since = self.timestamp

    class SiteRevoked(_SiteStatusChanged):
        new_status = REVOKED

    class SiteConnected(_SiteStatusChanged):
        new_status = CONNECTED

    class SiteReconnected(SiteConnected):
        pass

    class SiteDisconnected(_SiteStatusChanged):
        new_status = DISCONNECTED
        reason: str

    class SiteCutOff(_SiteStatusChanged):
        new_status = CUT_OFF

    class SeatGranted(Event):
        site: str
        user: str
        agent_class: str
        tenant: str
        campaign: str
        seat: int
        overuse: bool
        offline: bool
        seq: int | None

        def apply(self, licence: Licence) -> None:
            site = licence.sites[self.site]
            site.seats[self.user] = Seat(
                self.seat,
                self.agent_class,
                self.tenant,
                self.campaign,
                self.occurred_at,
                self.overuse,
                self.offline,
            )
            if self.seq is not None and self.seq > site.last_seq:
                site.last_seq = self.seq
            licence.next_seat = max(licence.next_seat, self.seat + 1)
            for pool in licence.pools_for(self.agent_class):
                pool.in_use += 1

    class SeatRefused(Event):
        site: str
        user: str
        agent_class: str
        tenant: str
        campaign: str
        reason: str
        detail: str

    class SeatReleased(Event):
        site: str
        user: str
        agent_class: str
        seat: int
        reason: str
        offline: bool
        seq: int | None

        def apply(self, licence: Licence) -> None:
            site = licence.sites[self.site]
            del site.seats[self.user]
            if self.seq is not None and self.seq > site.last_seq:
                site.last_seq = self.seq
            for pool in licence.pools_for(self.agent_class):
                pool.in_use -= 1

    class OveruseStarted(Event):
        pool: str
        in_use: int
        limit: int
        deadline: datetime

        def apply(self, licence: Licence) -> None:
            pool = licence.pools[self.pool]
            if pool.state != grace.OPEN:
                pool.state = grace.OPEN
                pool.opened_at = self.occurred_at
                pool.severity = 0
                pool.enforced = False
            pool.deadline = self.deadline
            pool.overuse = True

    class OveruseEnded(Event):
        pool: str
        in_use: int
        limit: int

        def apply(self, licence: Licence) -> None:
            licence.pools[self.pool].overuse = False

    class AbuseNoticeIssued(Event):
        pool: str
        severity: int
        deadline: datetime | None
        detail: str

        def apply(self, licence: Licence) -> None:
            pool = licence.pools[self.pool]
            pool.severity = max(pool.severity, self.severity)

    class GraceExpired(Event):
        pool: str
        in_use: int
        limit: int

        def apply(self, licence: Licence) -> None:
            pool = licence.pools[self.pool]
            pool.state = grace.SPENT
            pool.closed_at = pool.deadline or self.timestamp
            pool.deadline = None

    class EnforcementStarted(Event):
        pool: str
        in_use: int
        limit: int

        def apply(self, licence: Licence) -> None:
            licence.pools[self.pool].enforced = True

    class GraceRearmed(Event):
        pool: str
        reason: str

        def apply(self, licence: Licence) -> None:
            pool = licence.pools[self.pool]
            pool.state = grace.AVAILABLE
            pool.deadline = pool.opened_at = pool.closed_at = None
            pool.severity = 0
            pool.enforced = False
            pool.overuse = False

    class ClockStepped(Event):
        wall_clock: datetime
        recorded: datetime

    class AuditCheckpointSigned(Event):
        tree_size: int
        root: bytes
        note: str

        def apply(self, licence: Licence) -> None:
            licence.last_checkpoint_size = self.tree_size

    class AuditTrailExported(Event):
        day: str
        first_id: int
        last_id: int
        destination: str
        sha256: str

        def apply(self, licence: Licence) -> None:
            licence.exported_days[self.day] = self.sha256

    # ------------------------------------------------------------------ state
    def __init__(
        self,
        occurred_at: datetime,
        licence_id: str,
        customer: str,
        limits: dict[str, int],
        total_pred_acd: int | None,
        expires_at: datetime,
        grace_seconds: int,
        rearm_seconds: int,
        ceiling_percent: int | None,
        cutoff_seconds: int,
    ) -> None:
        self.licence_id = licence_id
        self.customer = customer
        self.limits = dict(limits)
        self.total_pred_acd = total_pred_acd
        self.expires_at = expires_at
        self.policy = GracePolicy(grace_seconds, rearm_seconds, ceiling_percent)
        self.cutoff_seconds = cutoff_seconds
        self.expired = False
        self.sites: dict[str, Site] = {}
        self.pools: dict[str, grace.Pool] = {}
        self.next_seat = 1
        self.exported_days: dict[str, str] = {}
        self.last_checkpoint_size = 0
        self._rebuild_pools()

    def _rebuild_pools(self) -> None:
        wanted: dict[str, tuple[tuple[str, ...], int]] = {
            c: ((c,), n) for c, n in self.limits.items()
        }
        if self.total_pred_acd is not None:
            wanted[COMBINED_POOL] = (COMBINED_MEMBERS, self.total_pred_acd)
        pools = {}
        for name, (members, limit) in wanted.items():
            pool = self.pools.get(name) or grace.Pool(name, members, limit)
            pool.limit = limit
            pool.in_use = sum(
                1 for s in self.sites.values() for seat in s.seats.values()
                if seat.agent_class in members
            )
            pools[name] = pool
        self.pools = pools

    def pools_for(self, agent_class: str) -> list[grace.Pool]:
        """The pools a seat of this class counts in: its class, and PRED+ACD if capped."""
        pools = self.pools
        found = [pools[agent_class]] if agent_class in pools else []
        if agent_class in COMBINED_MEMBERS and COMBINED_POOL in pools:
            found.append(pools[COMBINED_POOL])
        return found

    @property
    def seats_in_use(self) -> int:
        return sum(len(s.seats) for s in self.sites.values())

    # ------------------------------------------------------------------ commands
    @classmethod
    def issue(
        cls,
        now: datetime,
        *,
        customer: str,
        limits: Mapping[str, int],
        total_pred_acd: int | None = None,
        expires_at: datetime | None = None,
        policy: GracePolicy = DEFAULT_POLICY,
        cutoff_seconds: int = DEFAULT_CUTOFF_SECONDS,
        master_slave: bool = True,
    ) -> Licence:
        """Issue the licence. Raises LicenceTooSmallError, LicenceError."""
        expires_at = expires_at or now + timedelta(days=365)
        _check_terms(now, customer, limits, total_pred_acd, expires_at, policy, master_slave)
        return cls._create(
            cls.LicenceIssued,
            id=LICENCE_ID,
            timestamp=now,
            occurred_at=now,
            licence_id=f"LIC-{now:%Y%m%d}-{hashlib.sha256(customer.encode()).hexdigest()[:6].upper()}",
            customer=customer,
            limits=dict(limits),
            total_pred_acd=total_pred_acd,
            expires_at=expires_at,
            grace_seconds=policy.grace_seconds,
            rearm_seconds=policy.rearm_seconds,
            ceiling_percent=policy.ceiling_percent,
            cutoff_seconds=cutoff_seconds,
        )

    def _emit(self, event_class: type[Any], now: datetime, occurred_at: datetime | None = None,
              **fields: Any) -> None:
        """Record one event: what the library's trigger_event does, without its per-call
        checks (the classes here are fixed), as this is the hot path of every grant."""
        event = event_class(originator_id=self.id, originator_version=self.version + 1,
                            timestamp=now, occurred_at=occurred_at or now, **fields)
        event.mutate(self)
        self._pending_events.append(event)

    def collect_events(self) -> list[Any]:
        collected, self._pending_events = self._pending_events, []
        return collected

    def amend(
        self,
        now: datetime,
        *,
        limits: Mapping[str, int] | None = None,
        total_pred_acd: int | None | bool = False,
        expires_at: datetime | None = None,
        policy: GracePolicy | None = None,
    ) -> None:
        """Change the licence terms. Re-arms grace where it is open or spent (rule 4)."""
        new_limits = dict(self.limits) if limits is None else dict(limits)
        new_total = self.total_pred_acd if total_pred_acd is False else total_pred_acd
        assert new_total is None or isinstance(new_total, int)
        new_expiry = expires_at or self.expires_at
        new_policy = policy or self.policy
        _check_terms(now, self.customer, new_limits, new_total, new_expiry, new_policy, True,
                     check_expiry_from=now)
        to_rearm = [p.name for p in self.pools.values() if p.state != grace.AVAILABLE]
        self._emit(
            self.LicenceAmended,
            now,
            limits=new_limits,
            total_pred_acd=new_total,
            expires_at=new_expiry,
            grace_seconds=new_policy.grace_seconds,
            rearm_seconds=new_policy.rearm_seconds,
            ceiling_percent=new_policy.ceiling_percent,
        )
        for name in to_rearm:
            if name in self.pools:
                self._emit(self.GraceRearmed, now, pool=name, reason="amended")

    def enrol_site(
        self, now: datetime, name: str, fingerprint: str = "",
        local_limits: Mapping[str, int] | None = None,
    ) -> None:
        if not _SITE_NAME.fullmatch(name):
            raise LicenceError(
                f"bad site name {name!r}: use letters, digits and inner hyphens (at most 63)"
            )
        if name in self.sites and self.sites[name].status != REVOKED:
            raise SiteExistsError(f"site {name!r} is already enrolled")
        for c in local_limits or {}:
            if c not in AGENT_CLASSES:
                raise LicenceError(f"unknown agent class {c!r} in local limits")
        if name in self.sites:  # re-enrolling a revoked site: it starts from no seats
            self._release_all(now, self.sites[name], ReleaseReason.OPERATOR)
        self._emit(self.SiteEnrolled, now, site=name, fingerprint=fingerprint,
                   local_limits=dict(local_limits or {}))

    def revoke_site(self, now: datetime, name: str) -> list[Release]:
        site = self._site(name)
        released = self._release_all(now, site, ReleaseReason.OPERATOR)
        self._emit(self.SiteRevoked, now, site=name)
        return released

    def connect_site(self, now: datetime, name: str) -> None:
        site = self._site(name)
        if site.status == REVOKED:
            raise UnknownSiteError(f"site {name!r} is revoked")
        if site.status in (DISCONNECTED, CUT_OFF):
            self._emit(self.SiteReconnected, now, site=name)
        elif site.status != CONNECTED:
            self._emit(self.SiteConnected, now, site=name)

    def disconnect_site(self, now: datetime, name: str, reason: str = "connection lost") -> None:
        """The site's connection dropped: its seats keep counting until cut-off."""
        site = self._site(name)
        if site.status == CONNECTED:
            self._emit(self.SiteDisconnected, now, site=name, reason=reason)

    def acquire(
        self,
        now: datetime,
        site_name: str,
        user: str,
        agent_class: str,
        tenant: str = "",
        campaign: str = "",
    ) -> Grant | Refusal:
        """Ask for a seat. A repeat for a user already seated returns the same seat."""
        site = self.sites.get(site_name)
        if site is None:
            return self._refuse(now, site_name, user, agent_class, tenant, campaign,
                                RefusalReason.UNKNOWN_SITE, f"site {site_name!r} is not enrolled")
        held = site.seats.get(user)
        if held is not None:
            return Grant(site_name, user, held.number, held.agent_class, held.overuse,
                         self._deadline(held.agent_class), repeated=True)
        reason, detail = self._check_seat(site, agent_class)
        if reason is not None:
            return self._refuse(now, site_name, user, agent_class, tenant, campaign,
                                reason, detail)
        admission = grace.admit(self.pools_for(agent_class), self.policy)
        if admission.refusal is not None:
            pool = self.pools[admission.refused_pool or agent_class]
            detail = (
                f"{pool.name} limit {pool.limit} is enforced: grace was spent"
                if admission.refusal == RefusalReason.LIMIT_ENFORCED
                else f"{pool.name} over-use ceiling of {grace.ceiling(pool, self.policy)} reached"
            )
            return self._refuse(now, site_name, user, agent_class, tenant, campaign,
                                admission.refusal, detail)
        return self._grant(now, now, site, user, agent_class, tenant, campaign,
                           admission, offline=False, seq=None)

    def _check_seat(self, site: Site, agent_class: str) -> tuple[str | None, str]:
        if site.status == REVOKED:
            return RefusalReason.SITE_REVOKED, f"site {site.name!r} is revoked"
        if self.expired:
            return RefusalReason.LICENCE_EXPIRED, f"the licence expired at {self.expires_at:%Y-%m-%d %H:%M}Z"
        if agent_class not in self.limits:
            return RefusalReason.CLASS_NOT_LICENSED, f"class {agent_class!r} is not licensed"
        local = site.local_limits.get(agent_class)
        if local is not None and site.in_use(agent_class) + 1 > local:
            return RefusalReason.SITE_LIMIT, f"site {site.name} local {agent_class} limit {local} reached"
        return None, ""

    def _refuse(self, now: datetime, site: str, user: str, agent_class: str, tenant: str,
                campaign: str, reason: str, detail: str) -> Refusal:
        self._emit(self.SeatRefused, now, site=site, user=user, agent_class=agent_class,
                   tenant=tenant, campaign=campaign, reason=reason, detail=detail)
        return Refusal(site, user, reason, detail)

    def _grant(self, now: datetime, occurred_at: datetime, site: Site, user: str,
               agent_class: str, tenant: str, campaign: str, admission: grace.Admission,
               *, offline: bool, seq: int | None) -> Grant:
        for name in admission.opens:
            pool = self.pools[name]
            deadline = grace.deadline_for(occurred_at, self.policy)
            self._emit(self.OveruseStarted, now, occurred_at, pool=name,
                       in_use=pool.in_use + 1, limit=pool.limit, deadline=deadline)
            self._emit(self.AbuseNoticeIssued, now, occurred_at, pool=name,
                       severity=Severity.OPENED, deadline=deadline,
                       detail=f"{name} over-use: {pool.in_use + 1} in use, limit {pool.limit}; "
                              f"grace until {deadline:%Y-%m-%d %H:%M}Z")
        for name in admission.resumes:
            pool = self.pools[name]
            self._emit(self.OveruseStarted, now, occurred_at, pool=name,
                       in_use=pool.in_use + 1, limit=pool.limit, deadline=pool.deadline)
        if offline and admission.overuse:
            for pool in self.pools_for(agent_class):
                if pool.state == grace.SPENT and pool.in_use + 1 > pool.limit:
                    self._emit(self.AbuseNoticeIssued, now, occurred_at, pool=pool.name,
                               severity=Severity.EXPIRED, deadline=None,
                               detail=f"site {site.name} granted {agent_class} over the enforced "
                                      f"limit while offline")
        number = self.next_seat
        self._emit(self.SeatGranted, now, occurred_at, site=site.name, user=user,
                   agent_class=agent_class, tenant=tenant, campaign=campaign, seat=number,
                   overuse=admission.overuse, offline=offline, seq=seq)
        return Grant(site.name, user, number, agent_class, admission.overuse,
                     self._deadline(agent_class) if admission.overuse else None,
                     opened=admission.opens)

    def _deadline(self, agent_class: str) -> datetime | None:
        deadlines = [p.deadline for p in self.pools_for(agent_class)
                     if p.state == grace.OPEN and p.deadline is not None]
        return min(deadlines) if deadlines else None

    def release(self, now: datetime, site_name: str, user: str,
                reason: str = ReleaseReason.LOGOFF) -> Release:
        """Return a seat. Raises UnknownSeatError if the user holds none at that site."""
        site = self._site(site_name)
        if reason not in ReleaseReason.ALL:
            raise LicenceError(f"unknown release reason {reason!r}")
        if user not in site.seats:
            raise UnknownSeatError(f"user {user!r} holds no seat at site {site_name!r}")
        return self._release(now, now, site, user, reason, offline=False, seq=None)

    def _release(self, now: datetime, occurred_at: datetime, site: Site, user: str,
                 reason: str, *, offline: bool, seq: int | None) -> Release:
        seat = site.seats[user]
        self._emit(self.SeatReleased, now, occurred_at, site=site.name, user=user,
                   agent_class=seat.agent_class, seat=seat.number, reason=reason,
                   offline=offline, seq=seq)
        for pool in self.pools_for(seat.agent_class):
            if pool.overuse and pool.in_use <= pool.limit:
                self._emit(self.OveruseEnded, now, occurred_at, pool=pool.name,
                           in_use=pool.in_use, limit=pool.limit)
        return Release(site.name, user, seat.number, reason)

    def _release_all(self, now: datetime, site: Site, reason: str) -> list[Release]:
        return [self._release(now, now, site, user, reason, offline=False, seq=None)
                for user in list(site.seats)]

    def sync(self, now: datetime, site_name: str, offline_events: Sequence[OfflineEvent],
             held: Iterable[HeldSeat]) -> SyncResult:
        """Apply a reconnecting site's offline journal exactly once, then reconcile.

        Events at or below the site's last applied sequence number are skipped, so a
        redelivery after a drop mid-sync records nothing twice.
        """
        site = self._site(site_name)
        if site.status == REVOKED:
            raise UnknownSiteError(f"site {site_name!r} is revoked")
        applied = skipped = reconciled = 0
        for ev in sorted(offline_events, key=lambda e: e.seq):
            if ev.seq <= site.last_seq:
                skipped += 1
                continue
            occurred = min(ev.occurred_at, now)
            if ev.kind == "grant" and ev.user not in site.seats and ev.agent_class in self.limits:
                admission = grace.admit(self.pools_for(ev.agent_class), self.policy, offline=True)
                self._grant(now, occurred, site, ev.user, ev.agent_class, ev.tenant, ev.campaign,
                            admission, offline=True, seq=ev.seq)
                applied += 1
            elif ev.kind == "release" and ev.user in site.seats:
                self._release(now, occurred, site, ev.user, ReleaseReason.LOGOFF,
                              offline=True, seq=ev.seq)
                applied += 1
            else:
                skipped += 1
        held_now = {h.user: h for h in held}
        for user in [u for u in site.seats if u not in held_now]:
            self._release(now, now, site, user, ReleaseReason.RECONCILED, offline=False, seq=None)
            reconciled += 1
        for user, h in held_now.items():
            if user not in site.seats and h.agent_class in self.limits:
                admission = grace.admit(self.pools_for(h.agent_class), self.policy, offline=True)
                self._grant(now, now, site, user, h.agent_class, h.tenant, h.campaign,
                            admission, offline=True, seq=None)
                reconciled += 1
        return SyncResult(applied, skipped, reconciled)

    def tick(self, now: datetime) -> list[Notice]:
        """Fire what is due by ``now`` (rule 5): expiry, grace deadlines and notices,
        re-arming, and site cut-offs. Returns the notices to broadcast."""
        notices: list[Notice] = []
        if not self.expired and now >= self.expires_at:
            self._emit(self.LicenceExpired, now)
            for site in self.sites.values():
                self._release_all(now, site, ReleaseReason.EXPIRED)
        for pool in list(self.pools.values()):
            for t in grace.due_transitions(pool, now, self.policy):
                notices.extend(self._transition(now, pool, t))
        cutoff = timedelta(seconds=self.cutoff_seconds)
        for site in self.sites.values():
            if site.status == DISCONNECTED and site.since is not None and now >= site.since + cutoff:
                self._release_all(now, site, ReleaseReason.SITE_CUT_OFF)
                self._emit(self.SiteCutOff, now, site=site.name)
        return notices

    def _transition(self, now: datetime, pool: grace.Pool, t: grace.Transition) -> list[Notice]:
        if t.kind == "rearm":
            self._emit(self.GraceRearmed, now, pool=pool.name, reason="rearm_after")
            return []
        if t.kind == "notice":
            assert pool.deadline is not None
            left = pool.deadline - now
            detail = (f"{pool.name} over-use grace ends {pool.deadline:%Y-%m-%d %H:%M}Z "
                      f"({_hours(left)} left): {pool.in_use} in use, limit {pool.limit}")
            self._emit(self.AbuseNoticeIssued, now, pool=pool.name, severity=t.severity,
                       deadline=pool.deadline, detail=detail)
            return [Notice(pool.name, t.severity, pool.deadline, detail)]
        # expire: recorded as of the deadline, which is when it happened.
        deadline = pool.deadline
        self._emit(self.GraceExpired, now, deadline, pool=pool.name, in_use=pool.in_use,
                   limit=pool.limit)
        enforced = pool.in_use > pool.limit
        if enforced:
            self._emit(self.EnforcementStarted, now, deadline, pool=pool.name,
                       in_use=pool.in_use, limit=pool.limit)
        detail = (f"{pool.name} grace expired: limit {pool.limit} now enforced"
                  + (f" ({pool.in_use} in use; new seats refused)" if enforced else ""))
        self._emit(self.AbuseNoticeIssued, now, deadline, pool=pool.name,
                   severity=Severity.EXPIRED, deadline=deadline, detail=detail)
        return [Notice(pool.name, Severity.EXPIRED, deadline, detail)]

    def next_due(self) -> datetime | None:
        """The earliest time at which :meth:`tick` will have something to do."""
        times = [t for p in self.pools.values() if (t := grace.next_due(p, self.policy))]
        if not self.expired:
            times.append(self.expires_at)
        cutoff = timedelta(seconds=self.cutoff_seconds)
        times += [s.since + cutoff for s in self.sites.values()
                  if s.status == DISCONNECTED and s.since is not None]
        return min(times) if times else None

    def record_clock_step(self, now: datetime, wall: datetime, previous: datetime) -> None:
        self._emit(self.ClockStepped, now, wall_clock=wall, recorded=previous)

    def record_checkpoint(self, now: datetime, tree_size: int, root: bytes, note: str) -> None:
        self._emit(self.AuditCheckpointSigned, now, tree_size=tree_size, root=root, note=note)

    def record_export(self, now: datetime, day: str, first_id: int, last_id: int,
                      destination: str, sha256: str) -> None:
        self._emit(self.AuditTrailExported, now, day=day, first_id=first_id, last_id=last_id,
                   destination=destination, sha256=sha256)

    def _site(self, name: str) -> Site:
        try:
            return self.sites[name]
        except KeyError:
            raise UnknownSiteError(f"site {name!r} is not enrolled") from None


def _hours(delta: timedelta) -> str:
    return f"{max(delta.total_seconds(), 0) / 3600:.0f}h"


def _check_terms(now: datetime, customer: str, limits: Mapping[str, int],
                 total_pred_acd: int | None, expires_at: datetime, policy: GracePolicy,
                 master_slave: bool, check_expiry_from: datetime | None = None) -> None:
    if not customer.strip():
        raise LicenceError("a licence needs a customer name")
    for c, n in limits.items():
        if c not in AGENT_CLASSES:
            raise LicenceError(f"unknown agent class {c!r}")
        if n < 0:
            raise LicenceError(f"negative seat limit for {c}")
    if total_pred_acd is not None and total_pred_acd < 0:
        raise LicenceError("negative PRED+ACD total")
    total = licence_total(limits, total_pred_acd)
    if master_slave and total < MIN_LICENCE_SEATS:
        raise LicenceTooSmallError(
            f"a master/slave licence needs at least {MIN_LICENCE_SEATS} seats; "
            f"these limits total {total}"
        )
    start = check_expiry_from or now
    if expires_at <= start:
        raise LicenceError("the expiry date must be in the future")
    if expires_at > start + timedelta(days=MAX_LICENCE_DAYS):
        raise LicenceError("a licence runs for at most one year")
    if policy.grace_seconds <= 0:
        raise LicenceError("the grace period must be positive")
    if policy.rearm_seconds < 0:
        raise LicenceError("the re-arm period must not be negative")
    if policy.ceiling_percent is not None and policy.ceiling_percent < 100:
        raise LicenceError("the over-use ceiling is a percentage of the limit, at least 100")


# Stored topics name the module as it was first released (``ledger.licence``). A topic is part
# of every sealed record (its Merkle leaf and its AES-GCM associated data) and of every export
# already delivered, so where the module lives now must not change what is stored.
STORED_MODULE = "ledger.licence"


def _pin_topics() -> None:
    register_topic(STORED_MODULE, sys.modules[__name__])
    classes: list[type] = [Licence]
    classes += [v for v in vars(Licence).values()
                if isinstance(v, type) and v.__qualname__.startswith("Licence.")]
    for cls in classes:
        cls.TOPIC = f"{STORED_MODULE}:{cls.__qualname__}"  # type: ignore[attr-defined]


_pin_topics()
