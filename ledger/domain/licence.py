"""The Licence aggregate: one licence, its sites and seats, and every event they produce.

A master serves one licence, so one aggregate holds all of its state; every command is
decided against it and recorded as events on it, which gives a single total order and lets
a batch of commands from many connections be committed in one transaction.

Commands check their rules first and only then trigger events; state changes only in the
events' ``apply`` methods. Every method that records something takes ``now``, the ledger's
recorded time (see :class:`ledger.clock.TimeKeeper`). The grace rules live in
:mod:`ledger.domain.grace`, what pool events do in :mod:`ledger.domain.pools`, an hours
licence's balance in :mod:`ledger.domain.hours`, notice texts in :mod:`ledger.domain.notices`,
and the outcomes commands return in :mod:`ledger.domain.outcomes`.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID, uuid5

import attrs
from eventsourcing.domain import Aggregate
from eventsourcing.utils import register_topic

from ledger.domain import grace, notices
from ledger.domain import hours as hourly
from ledger.domain.hours import Balance, HoursEventKind
from ledger.domain.outcomes import (
    UPSTREAM_PREFIX,
    Assessment,
    Grant,
    HeldSeat,
    Notice,
    OfflineEvent,
    Refusal,
    Release,
    SyncResult,
)
from ledger.domain.pools import (
    Pool,
    PoolEventKind,
    PoolState,
    apply_pool_event,
    pool_limits,
    recounted,
    within_local_limit,
)
from ledger.domain.terms import LicenceTerms, check_installable
from ledger.domain.values import (
    AGENT_CLASSES,
    COMBINED_MEMBERS,
    COMBINED_POOL,
    DEFAULT_CUTOFF_SECONDS,
    DEFAULT_POLICY,
    EXPIRY_WARNING_DAYS,
    MAX_LICENCE_DAYS,
    MIN_LICENCE_SEATS,
    TRIAL_CAMPAIGNS,
    TRIAL_SEATS,
    GracePolicy,
    RefusalReason,
    ReleaseReason,
    Severity,
    SiteState,
    check_site_name,
    licence_total,
)
from ledger.errors import (
    LicenceError,
    LicenceTooSmallError,
    SiteExistsError,
    UnknownSeatError,
    UnknownSiteError,
)

__all__ = [
    "CONNECTED", "CUT_OFF", "DISCONNECTED", "LICENCE_ID", "NEW", "REVOKED", "Grant",
    "HeldSeat", "Licence", "Notice", "OfflineEvent", "Refusal", "Release", "Seat", "Site",
    "SyncResult",
]

LICENCE_ID = uuid5(UUID("6f1c1a52-52a5-4d8e-a0b5-0c5e1c8a7d10"), "seatledger-licence")

# Kept for callers of the first version; the statuses are SiteState's.
NEW = SiteState.NEW
CONNECTED = SiteState.CONNECTED
DISCONNECTED = SiteState.DISCONNECTED
CUT_OFF = SiteState.CUT_OFF
REVOKED = SiteState.REVOKED


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


@attrs.define
class Site:
    """An enrolled slave installation, as the master sees it.

    The init fields' order is stored (in aggregate snapshots): append new ones at the end.
    """

    name: str
    fingerprint: str
    local_limits: dict[str, int]
    status: SiteState = SiteState.NEW
    since: datetime | None = None
    last_seq: int = 0
    seats: dict[str, Seat] = attrs.Factory(dict)
    # Derived from ``seats``, so not stored: seats held per agent class.
    held_by_class: dict[str, int] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        for seat in self.seats.values():
            self.held_by_class[seat.agent_class] = self.held_by_class.get(seat.agent_class, 0) + 1

    @property
    def revoked(self) -> bool:
        return self.status == SiteState.REVOKED

    def admits(self, fingerprint: str) -> bool:
        """Whether a connection presenting a certificate with ``fingerprint`` is this site's:
        the site is not revoked and the fingerprint is the one pinned at enrolment (a site
        enrolled without one takes any certificate the CA issued for its name)."""
        return not self.revoked and (not self.fingerprint or self.fingerprint == fingerprint)

    def in_use(self, agent_class: str) -> int:
        """Seats of ``agent_class`` this site holds."""
        return self.held_by_class.get(agent_class, 0)

    def within_local_limit(self, agent_class: str) -> bool:
        """Whether one more ``agent_class`` seat stays within this site's local limit."""
        return within_local_limit(self.held_by_class, self.local_limits, agent_class)

    def add_seat(self, user: str, seat: Seat) -> None:
        """Only for event ``apply`` methods."""
        if user in self.seats:
            self.remove_seat(user)
        self.seats[user] = seat
        self.held_by_class[seat.agent_class] = self.held_by_class.get(seat.agent_class, 0) + 1

    def remove_seat(self, user: str) -> Seat:
        """Only for event ``apply`` methods."""
        seat = self.seats.pop(user)
        left = self.held_by_class[seat.agent_class] - 1
        if left:
            self.held_by_class[seat.agent_class] = left
        else:
            del self.held_by_class[seat.agent_class]
        return seat


_RELEASE_REASONS = frozenset(ReleaseReason)
# The seat events' pool event kinds, looked up once: a member read from its enum class
# costs a call to EnumType.__getattr__'s hook, and a replay reads one per seat event.
_SEAT_GRANTED = PoolEventKind.SEAT_GRANTED
_SEAT_RELEASED = PoolEventKind.SEAT_RELEASED
# Hours notices' severities, by the percentage left.
_HOURS_SEVERITY: Mapping[int, Severity] = {
    20: Severity.OPENED, 10: Severity.DAY_LEFT, 5: Severity.HOURS_LEFT}


class Licence(Aggregate):
    """The licence, its sites and seats."""

    # ------------------------------------------------------------------ events
    class Event(Aggregate.Event):
        occurred_at: datetime

        # Whether this event's apply() reads no pool and changes pools only by counting a
        # seat in or out: a replay may then defer that count (see Licence.count_later).
        counts_seats_only: ClassVar[bool] = False

    class LicenceIssued(Aggregate.Created):
        """Terms set directly (tests; stores of earlier versions, whose operator issued its
        own licence). Those of earlier versions carry no ``in_force`` and run in trial."""

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
        in_force: bool
        hours: dict[str, int]

    class TrialStarted(Aggregate.Created):
        """The ledger of a new master (``seatledger init``): no licence yet, so trial mode
        until a vendor-signed licence is installed."""

        occurred_at: datetime
        cutoff_seconds: int

    class LicenceInstalled(Event):
        """A vendor-signed licence file was installed; ``licence_file`` is the whole file."""

        licence_id: str
        customer: str
        serial: int
        issued_at: datetime
        limits: dict[str, int]
        total_pred_acd: int | None
        expires_at: datetime
        grace_seconds: int
        rearm_seconds: int
        ceiling_percent: int | None
        campaigns: int | None
        master_key: str
        issuer: str
        export_recipients: list[str]
        export_tolerated_days: int
        export_destination: str
        export_host_key: str
        sha256: str
        licence_file: str
        hours: dict[str, int]  # agent-hours added per class (absent before hours licences)

        def apply(self, licence: Licence) -> None:
            licence.licence_id = self.licence_id
            licence.customer = self.customer
            licence.limits = dict(self.limits)
            licence.total_pred_acd = self.total_pred_acd
            licence.expires_at = self.expires_at
            licence.policy = GracePolicy(self.grace_seconds, self.rearm_seconds,
                                         self.ceiling_percent)
            licence.campaign_limit = self.campaigns
            licence.serial = self.serial
            licence.licence_sha256 = self.sha256
            licence.issuer = self.issuer
            licence.issued_at = self.issued_at
            licence.export_recipients = list(self.export_recipients)
            licence.export_tolerated_days = self.export_tolerated_days
            licence.export_destination = self.export_destination
            licence.export_host_key = self.export_host_key
            licence.in_force = True
            licence.expired = self.expires_at <= self.timestamp
            licence.expiry_warned = 0
            if licence.export_due_since is None:
                licence.export_due_since = self.timestamp
            licence._rebuild_pools(self.occurred_at)
            licence._add_hours(getattr(self, "hours", None) or {}, self.timestamp)

    class LicenceRefused(Event):
        """A licence file was offered for installation and refused: a bad signature (edited,
        forged or self-made), another master's, an older serial, expired, too small or
        malformed. Recorded so that the vendor sees the attempt in the export."""

        sha256: str
        reason: str
        detail: str

    class LicenceNoticeIssued(Event):
        """A warning about the licence itself, sent to every site: its expiry nearing
        (``kind`` "expiry", ``days`` left), or exports missing (``kind`` "export", ``days``
        without one)."""

        kind: str
        severity: int
        days: int
        detail: str

        def apply(self, licence: Licence) -> None:
            if self.kind == "expiry":
                licence.expiry_warned = self.days
            elif self.kind == "export":
                licence.export_warned_days = self.days

    class ExportOverdue(Event):
        """More days have passed without a delivered export than the licence tolerates:
        over-use grace is withdrawn."""

        days: int
        tolerated: int

        def apply(self, licence: Licence) -> None:
            licence.export_overdue = True

    class ExportObligationRestored(Event):
        """An export was delivered to the licence's destination again: grace is back."""

        day: str

        def apply(self, licence: Licence) -> None:
            licence.export_overdue = False

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
            licence._rebuild_pools(self.occurred_at)
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
        new_status: ClassVar[SiteState]

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

        counts_seats_only = True

        def apply(self, licence: Licence) -> None:
            site = licence.sites[self.site]
            replaced = site.seats.get(self.user)
            if replaced is not None:
                licence._count_campaign(replaced.campaign, -1)
            licence._count_campaign(self.campaign, +1)
            site.add_seat(self.user, Seat(
                self.seat,
                self.agent_class,
                self.tenant,
                self.campaign,
                self.occurred_at,
                self.overuse,
                self.offline,
            ))
            if self.seq is not None and self.seq > site.last_seq:
                site.last_seq = self.seq
            if self.seat >= licence.next_seat:
                licence.next_seat = self.seat + 1
            licence._count(self.agent_class, _SEAT_GRANTED, self.occurred_at)
            if licence.hours_state:
                licence._count_hours(self.agent_class, HoursEventKind.GRANTED, self.timestamp)

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

        counts_seats_only = True

        def apply(self, licence: Licence) -> None:
            site = licence.sites[self.site]
            licence._count_campaign(site.remove_seat(self.user).campaign, -1)
            if self.seq is not None and self.seq > site.last_seq:
                site.last_seq = self.seq
            licence._count(self.agent_class, _SEAT_RELEASED, self.occurred_at)
            if licence.hours_state:
                licence._count_hours(self.agent_class, HoursEventKind.RELEASED, self.timestamp)

    class _PoolChanged(Event):
        """Something happened to a pool's grace window; what it does to the pool is
        :func:`ledger.domain.pools.apply_pool_event`'s, for this ``pool_event_kind``."""

        pool: str
        pool_event_kind: ClassVar[PoolEventKind]

        def apply_to(self, pool: Pool) -> Pool:
            """The pool after this event. The projections call this too."""
            return apply_pool_event(pool, self.pool_event_kind, self.occurred_at)

        def apply(self, licence: Licence) -> None:
            licence.pools[self.pool] = self.apply_to(licence.pools[self.pool])

    class OveruseStarted(_PoolChanged):
        pool_event_kind = PoolEventKind.OVERUSE_STARTED
        in_use: int
        limit: int
        deadline: datetime

        def apply_to(self, pool: Pool) -> Pool:
            return apply_pool_event(pool, self.pool_event_kind, self.occurred_at,
                                    deadline=self.deadline)

    class OveruseEnded(_PoolChanged):
        pool_event_kind = PoolEventKind.OVERUSE_ENDED
        in_use: int
        limit: int

    class AbuseNoticeIssued(_PoolChanged):
        pool_event_kind = PoolEventKind.NOTICE
        severity: int
        deadline: datetime | None
        detail: str

        def apply_to(self, pool: Pool) -> Pool:
            return apply_pool_event(pool, self.pool_event_kind, self.occurred_at,
                                    severity=self.severity)

    class GraceExpired(_PoolChanged):
        pool_event_kind = PoolEventKind.GRACE_EXPIRED
        in_use: int
        limit: int

    class EnforcementStarted(_PoolChanged):
        pool_event_kind = PoolEventKind.ENFORCEMENT_STARTED
        in_use: int
        limit: int

    class GraceRearmed(_PoolChanged):
        pool_event_kind = PoolEventKind.GRACE_REARMED
        reason: str

    class _HoursChanged(Event):
        """Something happened to a class's agent-hours; what it does to the balance is
        :func:`ledger.domain.hours.apply_hours_event`'s, for this ``hours_event_kind``."""

        agent_class: str
        hours_event_kind: ClassVar[HoursEventKind]

        def apply_to(self, balance: Balance) -> Balance:
            """The balance after this event. The projections call this too."""
            return hourly.apply_hours_event(balance, self.hours_event_kind, self.timestamp)

        def apply(self, licence: Licence) -> None:
            balances = licence.hours_balances
            assert balances is not None
            balances[self.agent_class] = self.apply_to(balances[self.agent_class])

    class HoursNoticeIssued(_HoursChanged):
        """``percent`` of the class's hours are left (20, 10, 5), as of ``occurred_at``."""

        hours_event_kind = HoursEventKind.NOTICE
        percent: int
        left_us: int
        used_us: int
        detail: str

        def apply_to(self, balance: Balance) -> Balance:
            return hourly.apply_hours_event(balance, self.hours_event_kind, self.timestamp,
                                           percent=self.percent)

    class HoursExhausted(_HoursChanged):
        """The class's hours reached zero (at ``occurred_at``): new seats are refused."""

        hours_event_kind = HoursEventKind.EXHAUSTED
        used_us: int
        detail: str

    class HoursCharged(_HoursChanged):
        """A synced site's offline seats of the class were held ``charge_us`` before the
        master learned of them: that use is taken from the balance now."""

        hours_event_kind = HoursEventKind.CHARGED
        site: str
        charge_us: int

        def apply_to(self, balance: Balance) -> Balance:
            return hourly.apply_hours_event(balance, self.hours_event_kind, self.timestamp,
                                           charge_us=self.charge_us)

    class HoursOverdrawn(Event):
        """A site's offline use, synced, drew on the class's hours with none left: never
        revoked, recorded so that the vendor sees it. ``left_us`` is the balance after it."""

        agent_class: str
        site: str
        left_us: int
        detail: str

    class ClockStepped(Event):
        wall_clock: datetime
        recorded: datetime

    class UpstreamLinked(Event):
        """This master is chained under an upstream master (a supermaster): its seats are
        also seats of ``site`` there. ``upstream`` is the upstream's origin (the name its
        audit trail is signed under), ``ca`` the SHA-256 of the upstream's CA certificate.
        Recorded when the first session with that upstream (or a different one) is synced;
        the vendor counts a chained seat once by it (docs/chaining.md)."""

        upstream: str
        site: str
        ca: str

        def apply(self, licence: Licence) -> None:
            licence.upstream = (self.upstream, self.site, self.ca)

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
            if licence.in_force and licence.delivers_to(self.destination):
                licence.export_due_since = self.timestamp
                licence.export_warned_days = 0

    # ------------------------------------------------------------------ state
    # What a vendor-signed licence sets beyond the first version's terms. Class-level defaults,
    # so that snapshots taken by earlier versions (which lack these) load as "not installed".
    in_force = False  # terms set by an installed licence (or directly, in tests)
    serial = 0
    licence_sha256 = ""
    issuer = ""
    issued_at: datetime | None = None
    campaign_limit: int | None = None
    export_recipients: list[str] | None = None
    export_tolerated_days = 30
    export_destination = ""
    export_host_key = ""
    export_due_since: datetime | None = None  # last delivered export (or first install)
    export_warned_days = 0
    export_overdue = False
    expiry_warned = 0  # the last expiry warning's days (0: none since the last install)
    # Seats held per campaign label; derived from the seats, built when first needed.
    campaign_seats: dict[str, int] | None = None
    # Agent-hours per class with an hours allowance (ledger.domain.hours); None: none ever.
    # Read it as ``hours_balances``: a snapshot stores each balance as its fields.
    hours_state: dict[str, Balance] | None = None
    # The upstream master this one is chained under: (origin, site name there, CA sha256).
    upstream: tuple[str, str, str] | None = None
    # Seat counts kept aside by class during a replay (count_later); None: none kept.
    _uncounted: dict[str, int] | None = None

    @property
    def hours_balances(self) -> dict[str, Balance] | None:
        """Agent-hours per class with an hours allowance (None: no licence gave any)."""
        state = self.hours_state
        if state and type(next(iter(state.values()))) is not Balance:
            for cls, fields in list(state.items()):
                state[cls] = Balance(**fields)  # type: ignore[arg-type]
        return state

    def __init__(
        self,
        occurred_at: datetime,
        licence_id: str = "",
        customer: str = "",
        limits: dict[str, int] | None = None,
        total_pred_acd: int | None = None,
        expires_at: datetime | None = None,
        grace_seconds: int = DEFAULT_POLICY.grace_seconds,
        rearm_seconds: int = DEFAULT_POLICY.rearm_seconds,
        ceiling_percent: int | None = None,
        cutoff_seconds: int = DEFAULT_CUTOFF_SECONDS,
        in_force: bool = False,
        hours: dict[str, int] | None = None,
    ) -> None:
        self.licence_id = licence_id
        self.customer = customer
        self.limits = dict(limits or {})
        self.total_pred_acd = total_pred_acd
        self.expires_at = expires_at or occurred_at
        self.policy = GracePolicy(grace_seconds, rearm_seconds, ceiling_percent)
        self.cutoff_seconds = cutoff_seconds
        self.in_force = in_force
        self.campaign_seats = {}
        self.expired = False
        self.sites: dict[str, Site] = {}
        self.pools: dict[str, Pool] = {}
        self.next_seat = 1
        self.exported_days: dict[str, str] = {}
        self.last_checkpoint_size = 0
        self._rebuild_pools(occurred_at)
        if hours:
            self._add_hours(hours, occurred_at)

    def _rebuild_pools(self, at: datetime) -> None:
        """New terms at ``at``: the pools they define, each keeping its grace state,
        recounted."""
        pools = {}
        for name, limit in pool_limits(self.limits, self.total_pred_acd).items():
            pool = self.pools.get(name) or Pool.new(name, limit)
            in_use = sum(site.in_use(c) for site in self.sites.values() for c in pool.members)
            pools[name] = apply_pool_event(pool, PoolEventKind.LIMIT, at,
                                           limit=limit, in_use=in_use)
        self.pools = pools

    def _pool_names_for(self, agent_class: str) -> tuple[str, ...]:
        pools = self.pools
        names: tuple[str, ...] = (agent_class,) if agent_class in pools else ()
        if agent_class in COMBINED_MEMBERS and COMBINED_POOL in pools:
            names += (COMBINED_POOL,)
        return names

    def pools_for(self, agent_class: str) -> list[Pool]:
        """The pools a seat of this class counts in: its class, and PRED+ACD if capped."""
        return [self.pools[name] for name in self._pool_names_for(agent_class)]

    def _count(self, agent_class: str, kind: PoolEventKind, at: datetime) -> None:
        """A seat of ``agent_class`` was granted or released: count it in its pools."""
        later = self._uncounted
        if later is not None:
            later[agent_class] = later.get(agent_class, 0) + (
                1 if kind is _SEAT_GRANTED else -1)
            return
        pools = self.pools
        for name in self._pool_names_for(agent_class):
            pools[name] = apply_pool_event(pools[name], kind, at)

    def count_later(self) -> None:
        """From now on, keep seat counts aside instead of making a new pool for each seat
        event (a replay of many thousands). Until :meth:`count_now`, only events whose
        class ``counts_seats_only`` may be applied: any other may read the pools."""
        if self._uncounted is None:
            self._uncounted = {}

    def count_now(self) -> None:
        """Count the seats kept aside in the pools, and count each seat event as it comes
        again. The same pools as counting one by one: a seat event changes only in-use."""
        later = self._uncounted
        if later is None:
            return
        del self._uncounted  # back to the class's None (and out of any snapshot's state)
        pools = self.pools
        for agent_class, delta in later.items():
            if delta:
                for name in self._pool_names_for(agent_class):
                    pools[name] = recounted(pools[name], pools[name].in_use + delta)

    def _add_hours(self, added: Mapping[str, int], at: datetime) -> None:
        """A licence added agent-hours (per class) at record time ``at``."""
        if not added:
            return
        balances = self.hours_balances
        if balances is None:
            balances = self.hours_state = {}
        for cls, n in added.items():
            balance = balances.get(cls)
            if balance is None:
                held = sum(site.in_use(cls) for site in self.sites.values())
                balance = Balance(cls, at, held=held)
            balances[cls] = hourly.apply_hours_event(balance, HoursEventKind.ADDED, at,
                                                    added_us=n * hourly.US_PER_HOUR)

    def _count_hours(self, agent_class: str, kind: HoursEventKind, at: datetime) -> None:
        balances = self.hours_balances
        assert balances is not None
        balance = balances.get(agent_class)
        if balance is not None:
            balances[agent_class] = hourly.apply_hours_event(balance, kind, at)

    def hours_left(self, agent_class: str, now: datetime) -> int | None:
        """The class's agent-hours left at ``now`` (seat-microseconds; negative when
        overdrawn), or None for a class without an hours allowance."""
        balance = (self.hours_balances or {}).get(agent_class)
        return None if balance is None else balance.left_at(now)

    def admits(self, site_name: str, fingerprint: str) -> bool:
        """Whether a connection from ``site_name`` presenting a certificate with
        ``fingerprint`` may be served: the site is enrolled, not revoked, and the
        fingerprint matches the one pinned at enrolment (see :meth:`Site.admits`)."""
        site = self.sites.get(site_name)
        return site is not None and site.admits(fingerprint)

    def admits_certificate(self, fingerprint: str) -> bool:
        """Whether a certificate with ``fingerprint`` is pinned by an unrevoked site (the
        TLS handshake's check, before the site's name is known)."""
        return bool(fingerprint) and any(
            site.fingerprint == fingerprint and site.admits(fingerprint)
            for site in self.sites.values())

    @property
    def seats_in_use(self) -> int:
        return sum(len(s.seats) for s in self.sites.values())

    @property
    def licensed(self) -> bool:
        """Whether licence terms are in force: installed (or set in tests) and not expired.
        Otherwise the trial rule applies to new seats."""
        return self.in_force and not self.expired

    def delivers_to(self, destination: str) -> bool:
        """Whether an export delivered to ``destination`` meets the licence's obligation."""
        return not self.export_destination or destination == self.export_destination

    def _campaigns(self) -> dict[str, int]:
        counts = self.campaign_seats
        if counts is None:
            counts = {}
            for site in self.sites.values():
                for seat in site.seats.values():
                    counts[seat.campaign] = counts.get(seat.campaign, 0) + 1
            self.campaign_seats = counts
        return counts

    def _count_campaign(self, campaign: str, delta: int) -> None:
        counts = self.campaign_seats
        if counts is None:  # (not a call to _campaigns() for each seat event of a replay)
            counts = self._campaigns()
        left = counts.get(campaign, 0) + delta
        if left > 0:
            counts[campaign] = left
        else:
            counts.pop(campaign, None)

    def _campaign_full(self, campaign: str, cap: int) -> bool:
        """Whether a seat of ``campaign`` would take the campaigns held above ``cap``."""
        counts = self._campaigns()
        return campaign not in counts and len(counts) >= cap

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
        hours: Mapping[str, int] | None = None,
    ) -> Licence:
        """Issue the licence (``hours``: agent-hours per class, as a licence file's
        ``[hours]``). Raises LicenceTooSmallError, LicenceError."""
        expires_at = expires_at or now + timedelta(days=365)
        _check_terms(now, customer, limits, total_pred_acd, expires_at, policy, master_slave)
        for c, n in (hours or {}).items():
            if c not in AGENT_CLASSES or n <= 0:
                raise LicenceError(f"bad hours allowance {c}={n}")
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
            in_force=True,
            hours=dict(hours or {}),
        )

    @classmethod
    def start_trial(cls, now: datetime,
                    cutoff_seconds: int = DEFAULT_CUTOFF_SECONDS) -> Licence:
        """A new master's ledger: no licence yet (trial mode) until one is installed."""
        return cls._create(cls.TrialStarted, id=LICENCE_ID, timestamp=now, occurred_at=now,
                           cutoff_seconds=cutoff_seconds)

    def install(self, now: datetime, terms: LicenceTerms, *, licence_file: str, sha256: str,
                issuer: str, master_key: str) -> bool:
        """Install a vendor-signed licence (its signature already checked against the pinned
        vendor key). Returns False, recording nothing, for the file already installed.

        Raises LicenceBindingError, LicenceSerialError, LicenceDatesError,
        LicenceTooSmallError, LicenceError: it may not be installed here, now.
        """
        if sha256 == self.licence_sha256:
            return False
        check_installable(terms, now, master_key=master_key, installed_serial=self.serial)
        rearm = grace.rearmed_by(self.pools.values(),
                                 pool_limits(terms.limits, terms.total_pred_acd))
        policy, export = terms.policy, terms.export
        self._emit(
            self.LicenceInstalled, now,
            licence_id=terms.licence_id, customer=terms.customer, serial=terms.serial,
            issued_at=terms.issued_at, limits=dict(terms.limits),
            total_pred_acd=terms.total_pred_acd, expires_at=terms.expires_at,
            grace_seconds=policy.grace_seconds, rearm_seconds=policy.rearm_seconds,
            ceiling_percent=policy.ceiling_percent, campaigns=terms.campaigns,
            master_key=terms.master_key, issuer=issuer,
            export_recipients=list(export.recipients),
            export_tolerated_days=export.tolerated_days,
            export_destination=export.destination, export_host_key=export.host_key,
            sha256=sha256, licence_file=licence_file, hours=dict(terms.hours),
        )
        for name in rearm:
            if name in self.pools:
                self._emit(self.GraceRearmed, now, pool=name, reason="limit_raised")
        return True

    def refuse_licence(self, now: datetime, *, sha256: str, reason: str, detail: str) -> None:
        """Record that a licence file (SHA-256 ``sha256``) was refused, and why."""
        self._emit(self.LicenceRefused, now, sha256=sha256, reason=reason, detail=detail)

    def _emit(self, event_class: type[Any], now: datetime, occurred_at: datetime | None = None,
              **fields: Any) -> None:
        """Record one event: what the library's trigger_event and mutate() do, without
        their checks (the event is made here, for this licence, as its next version), as
        this is the hot path of every grant. No event class here has a mutate() of its own
        but the licence's first."""
        version = self.version + 1
        event = event_class(originator_id=self.id, originator_version=version,
                            timestamp=now, occurred_at=occurred_at or now, **fields)
        event.apply(self)
        self.version = version
        self.modified_on = now
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
        """Change the licence terms directly (tests; the operator's path of earlier
        versions). Re-arms grace where the new terms raise a pool's limit (rule 4)."""
        new_limits = dict(self.limits) if limits is None else dict(limits)
        new_total = self.total_pred_acd if total_pred_acd is False else total_pred_acd
        assert new_total is None or isinstance(new_total, int)
        new_expiry = expires_at or self.expires_at
        new_policy = policy or self.policy
        _check_terms(now, self.customer, new_limits, new_total, new_expiry, new_policy, True,
                     check_expiry_from=now)
        to_rearm = grace.rearmed_by(self.pools.values(), pool_limits(new_limits, new_total))
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
                self._emit(self.GraceRearmed, now, pool=name, reason="limit_raised")

    def enrol_site(
        self, now: datetime, name: str, fingerprint: str = "",
        local_limits: Mapping[str, int] | None = None,
    ) -> None:
        """Enrol a site. Raises BadSiteNameError, SiteExistsError, LicenceError."""
        check_site_name(name)
        if name in self.sites and not self.sites[name].revoked:
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
        if site.revoked:
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
        upstream_refusal: str = "",
        upstream_detail: str = "",
    ) -> Grant | Refusal:
        """Ask for a seat. A repeat for a user already seated returns the same seat.

        ``upstream_refusal``: a chained master's upstream refused the seat this master would
        grant (:meth:`assess`); it is recorded as refused ``upstream:<reason>``."""
        decision = self._decide(now, site_name, user, agent_class, campaign)
        if isinstance(decision, Grant):
            return decision
        if isinstance(decision, tuple):
            return self._refuse(now, site_name, user, agent_class, tenant, campaign, *decision)
        if upstream_refusal:
            return self._refuse(now, site_name, user, agent_class, tenant, campaign,
                                f"{UPSTREAM_PREFIX}{upstream_refusal}", upstream_detail)
        return self._grant(now, now, self.sites[site_name], user, agent_class, tenant,
                           campaign, decision, offline=False, seq=None)

    def assess(self, now: datetime, site_name: str, user: str, agent_class: str,
               campaign: str = "") -> Assessment:
        """What :meth:`acquire` would decide now, recording nothing: a chained master asks
        its upstream only for a seat it would grant itself."""
        decision = self._decide(now, site_name, user, agent_class, campaign)
        if isinstance(decision, Grant):
            return Assessment(grant=True, repeated=True)
        if isinstance(decision, tuple):
            return Assessment(grant=False, reason=decision[0], detail=decision[1])
        return Assessment(grant=True, overuse=decision.overuse)

    def _decide(self, now: datetime, site_name: str, user: str, agent_class: str,
                campaign: str) -> Grant | tuple[str, str] | grace.Admission:
        """The decision on one more seat, without recording: the seat already held (a
        repeat), a refusal (reason, detail), or the admission to grant it with."""
        site = self.sites.get(site_name)
        if site is None:
            return RefusalReason.UNKNOWN_SITE, f"site {site_name!r} is not enrolled"
        held = site.seats.get(user)
        if held is not None:
            return Grant(site_name, user, held.number, held.agent_class, held.overuse,
                         self._deadline(held.agent_class), repeated=True)
        reason, detail = self._check_seat(now, site, agent_class)
        if reason is not None:
            return reason, detail
        admission = self._admission(agent_class, campaign, offline=False)
        if admission.refusal is not None:
            return admission.refusal, self._refusal_detail(admission, campaign)
        return admission

    def _admission(self, agent_class: str, campaign: str, *, offline: bool) -> grace.Admission:
        """The policy's answer for one more seat: the trial rule without a valid licence,
        else the licence's campaign limit, then its pools' grace (rule 1-4)."""
        if not self.licensed:
            over = self.seats_in_use + 1 > TRIAL_SEATS
            if over or self._campaign_full(campaign, TRIAL_CAMPAIGNS):
                if offline:  # it happened: recorded, flagged as over-use
                    return grace.Admission(overuse=True)
                return grace.Admission(refusal=RefusalReason.UNLICENSED,
                                       refused_pool="seats" if over else "campaigns")
            return grace.Admission()
        cap = self.campaign_limit
        if not offline and cap is not None and self._campaign_full(campaign, cap):
            return grace.Admission(refusal=RefusalReason.CAMPAIGN_LIMIT)
        return grace.admit(self.pools_for(agent_class), self.policy, offline=offline,
                           withdrawn=self.export_overdue)

    def _refusal_detail(self, admission: grace.Admission, campaign: str) -> str:
        reason = admission.refusal
        if reason == RefusalReason.UNLICENSED:
            why = ("the licence expired" if self.in_force
                   else "no vendor-signed licence is installed")
            rule = (f"at most {TRIAL_SEATS} seats held at once"
                    if admission.refused_pool == "seats"
                    else f"at most {TRIAL_CAMPAIGNS} campaigns among the seats held")
            return f"{why}: trial mode admits {rule}"
        if reason == RefusalReason.CAMPAIGN_LIMIT:
            return (f"campaign {campaign!r} would exceed the licence's {self.campaign_limit} "
                    "campaigns among the seats held")
        pool = self.pools[admission.refused_pool or ""]
        if reason == RefusalReason.LIMIT_ENFORCED:
            return f"{pool.name} limit {pool.limit} is enforced: grace was spent"
        if reason == RefusalReason.EXPORT_OVERDUE:
            return (f"{pool.name} limit {pool.limit} reached and over-use grace is withdrawn: "
                    "no audit export has been delivered to the vendor for too long")
        return f"{pool.name} over-use ceiling of {grace.ceiling(pool, self.policy)} reached"

    def _class_allowed(self, agent_class: str) -> bool:
        if not self.licensed:
            return agent_class in AGENT_CLASSES
        return agent_class in self.limits or agent_class in (self.hours_balances or {})

    def _check_seat(self, now: datetime, site: Site,
                    agent_class: str) -> tuple[RefusalReason | None, str]:
        if site.revoked:
            return RefusalReason.SITE_REVOKED, f"site {site.name!r} is revoked"
        if not self._class_allowed(agent_class):
            return RefusalReason.CLASS_NOT_LICENSED, f"class {agent_class!r} is not licensed"
        if not site.within_local_limit(agent_class):
            local = site.local_limits[agent_class]
            return RefusalReason.SITE_LIMIT, f"site {site.name} local {agent_class} limit {local} reached"
        balance = (self.hours_balances or {}).get(agent_class)
        if self.licensed and balance is not None and balance.left_at(now) <= 0:
            used = balance.used_at(now) / hourly.US_PER_HOUR
            return (RefusalReason.HOURS_EXHAUSTED,
                    f"{agent_class} hours licence used up ({used:.0f} agent-hours used)")
        return None, ""

    def _refuse(self, now: datetime, site: str, user: str, agent_class: str, tenant: str,
                campaign: str, reason: str, detail: str) -> Refusal:
        self._emit(self.SeatRefused, now, site=site, user=user, agent_class=agent_class,
                   tenant=tenant, campaign=campaign, reason=reason, detail=detail)
        return Refusal(site, user, reason, detail)

    def _grant(self, now: datetime, occurred_at: datetime, site: Site, user: str,
               agent_class: str, tenant: str, campaign: str, admission: grace.Admission,
               *, offline: bool, seq: int | None) -> Grant:
        opened: list[Notice] = []
        for name in admission.opens:
            pool = self.pools[name]
            deadline = grace.deadline_for(occurred_at, self.policy)
            self._emit(self.OveruseStarted, now, occurred_at, pool=name,
                       in_use=pool.in_use + 1, limit=pool.limit, deadline=deadline)
            notice = notices.grace_opened(name, pool.in_use + 1, pool.limit, deadline)
            self._emit(self.AbuseNoticeIssued, now, occurred_at, pool=name,
                       severity=notice.severity, deadline=deadline, detail=notice.detail)
            opened.append(notice)
        for name in admission.resumes:
            pool = self.pools[name]
            self._emit(self.OveruseStarted, now, occurred_at, pool=name,
                       in_use=pool.in_use + 1, limit=pool.limit, deadline=pool.deadline)
        if offline and admission.overuse:
            for pool in self.pools_for(agent_class):
                if pool.state == PoolState.SPENT and pool.in_use + 1 > pool.limit:
                    self._emit(self.AbuseNoticeIssued, now, occurred_at, pool=pool.name,
                               severity=Severity.EXPIRED, deadline=None,
                               detail=notices.offline_overuse_text(site.name, agent_class))
        number = self.next_seat
        self._emit(self.SeatGranted, now, occurred_at, site=site.name, user=user,
                   agent_class=agent_class, tenant=tenant, campaign=campaign, seat=number,
                   overuse=admission.overuse, offline=offline, seq=seq)
        return Grant(site.name, user, number, agent_class, admission.overuse,
                     self._deadline(agent_class) if admission.overuse else None,
                     opened=admission.opens, notices=tuple(opened))

    def _deadline(self, agent_class: str) -> datetime | None:
        deadlines = [p.deadline for p in self.pools_for(agent_class)
                     if p.state == PoolState.OPEN and p.deadline is not None]
        return min(deadlines) if deadlines else None

    def release(self, now: datetime, site_name: str, user: str,
                reason: str = ReleaseReason.LOGOFF) -> Release:
        """Return a seat. Raises UnknownSeatError if the user holds none at that site,
        LicenceError for a reason that is not a ReleaseReason."""
        site = self._site(site_name)
        if reason not in _RELEASE_REASONS:
            raise LicenceError(f"unknown release reason {reason!r}")
        if user not in site.seats:
            raise UnknownSeatError(f"user {user!r} holds no seat at site {site_name!r}")
        return self._release(now, now, site, user, ReleaseReason(reason), offline=False,
                             seq=None)

    def release_seats(self, now: datetime, site_name: str,
                      users: Sequence[str] | None = None) -> list[Release]:
        """An operator releases seats at a site (reason ``operator``): ``users``', or every
        seat held there (None: a dead site's, whose seats stay counted until then). All or
        nothing: raises UnknownSiteError, or UnknownSeatError naming a user who holds no
        seat there, before anything is recorded."""
        site = self._site(site_name)
        if users is None:
            return self._release_all(now, site, ReleaseReason.OPERATOR)
        chosen = list(dict.fromkeys(users))
        missing = [u for u in chosen if u not in site.seats]
        if missing:
            raise UnknownSeatError(f"user {missing[0]!r} holds no seat at site {site_name!r}")
        return [self._release(now, now, site, user, ReleaseReason.OPERATOR, offline=False,
                              seq=None) for user in chosen]

    def _release(self, now: datetime, occurred_at: datetime, site: Site, user: str,
                 reason: ReleaseReason, *, offline: bool, seq: int | None) -> Release:
        seat = site.seats[user]
        self._emit(self.SeatReleased, now, occurred_at, site=site.name, user=user,
                   agent_class=seat.agent_class, seat=seat.number, reason=reason,
                   offline=offline, seq=seq)
        for pool in self.pools_for(seat.agent_class):
            if pool.overuse and pool.in_use <= pool.limit:
                self._emit(self.OveruseEnded, now, occurred_at, pool=pool.name,
                           in_use=pool.in_use, limit=pool.limit)
        return Release(site.name, user, seat.number, reason)

    def _release_all(self, now: datetime, site: Site, reason: ReleaseReason) -> list[Release]:
        return [self._release(now, now, site, user, reason, offline=False, seq=None)
                for user in list(site.seats)]

    def sync(self, now: datetime, site_name: str, offline_events: Sequence[OfflineEvent],
             held: Iterable[HeldSeat]) -> SyncResult:
        """Apply a reconnecting site's offline journal exactly once, then reconcile.

        Events at or below the site's last applied sequence number are skipped, so a
        redelivery after a drop mid-sync records nothing twice.
        """
        site = self._site(site_name)
        if site.revoked:
            raise UnknownSiteError(f"site {site_name!r} is revoked")
        applied = skipped = reconciled = 0
        opened: list[Notice] = []
        journal = sorted(offline_events, key=lambda e: e.seq)
        charges = self._offline_charges(now, site, journal)
        for ev in journal:
            if ev.seq <= site.last_seq:
                skipped += 1
                continue
            occurred = min(ev.occurred_at, now)
            if (ev.kind == "grant" and ev.user not in site.seats
                    and self._class_allowed(ev.agent_class)):
                admission = self._admission(ev.agent_class, ev.campaign, offline=True)
                grant = self._grant(now, occurred, site, ev.user, ev.agent_class, ev.tenant,
                                    ev.campaign, admission, offline=True, seq=ev.seq)
                opened += grant.notices
                applied += 1
            elif ev.kind == "release" and ev.user in site.seats:
                reason = (ReleaseReason.SITE_CUT_OFF if ev.reason == ReleaseReason.SITE_CUT_OFF
                          else ReleaseReason.LOGOFF)
                self._release(now, occurred, site, ev.user, reason, offline=True, seq=ev.seq)
                applied += 1
            else:
                skipped += 1
        held_now = {h.user: h for h in held}
        for user in [u for u in site.seats if u not in held_now]:
            self._release(now, now, site, user, ReleaseReason.RECONCILED, offline=False, seq=None)
            reconciled += 1
        for user, h in held_now.items():
            if user not in site.seats and self._class_allowed(h.agent_class):
                admission = self._admission(h.agent_class, h.campaign, offline=True)
                grant = self._grant(now, now, site, user, h.agent_class, h.tenant, h.campaign,
                                    admission, offline=True, seq=None)
                opened += grant.notices
                reconciled += 1
        self._charge_offline_hours(now, site, charges)
        return SyncResult(applied, skipped, reconciled, tuple(opened))

    def _offline_charges(self, now: datetime, site: Site,
                         journal: Sequence[OfflineEvent]) -> dict[str, int]:
        """Per class with hours, the seat time the journal's new offline grants were held
        before now (the master counts them from now on): to each one's release in the
        journal, or to now."""
        balances = self.hours_balances
        if not balances:
            return {}
        held = set(site.seats)
        started: dict[str, tuple[str, datetime]] = {}
        charges: dict[str, int] = {}
        for ev in journal:  # as sync() applies it
            if ev.seq <= site.last_seq:
                continue
            occurred = min(ev.occurred_at, now)
            if ev.kind == "grant" and ev.user not in held and self._class_allowed(ev.agent_class):
                held.add(ev.user)
                if ev.agent_class in balances:
                    started[ev.user] = (ev.agent_class, occurred)
            elif ev.kind == "release" and ev.user in held:
                held.discard(ev.user)
                if ev.user in started:
                    cls, since = started.pop(ev.user)
                    charges[cls] = charges.get(cls, 0) + hourly.to_us(
                        max(occurred - since, timedelta(0)))
        for cls, since in started.values():
            charges[cls] = charges.get(cls, 0) + hourly.to_us(now - since)
        return charges

    def _charge_offline_hours(self, now: datetime, site: Site, charges: Mapping[str, int]) -> None:
        balances = self.hours_balances
        for cls, charge in sorted(charges.items()):
            if not charge or balances is None:
                continue
            self._emit(self.HoursCharged, now, agent_class=cls, site=site.name, charge_us=charge)
            left = balances[cls].left_at(now)
            if left < 0:
                self._emit(self.HoursOverdrawn, now, agent_class=cls, site=site.name,
                           left_us=left,
                           detail=notices.hours_overdrawn_text(site.name, cls, left))

    def tick(self, now: datetime) -> list[Notice]:
        """Fire what is due by ``now`` (rule 5): expiry, grace deadlines and notices,
        re-arming, and site cut-offs. Returns the notices to broadcast."""
        notices: list[Notice] = []
        if self.in_force and not self.expired:
            notices += self._licence_due(now)
        for pool in list(self.pools.values()):
            for t in grace.due_transitions(pool, now, self.policy):
                notices.extend(self._transition(now, pool, t))
        notices += self._hours_due(now)
        cutoff = timedelta(seconds=self.cutoff_seconds)
        for site in self.sites.values():
            if site.status == DISCONNECTED and site.since is not None and now >= site.since + cutoff:
                # The site's seats stay counted, as the vendor's product keeps them: a silent
                # site must not free seats for others. They are released when it syncs
                # (reconciled), by an operator, or when it is revoked.
                self._emit(self.SiteCutOff, now, site=site.name)
        return notices

    def _hours_due(self, now: datetime) -> list[Notice]:
        """Hours notices (20, 10, 5 % left) and exhaustion due by ``now``."""
        due: list[Notice] = []
        for cls, balance in sorted((self.hours_balances or {}).items()):
            found = hourly.due(balance, now)
            if found is None:
                continue
            used = balance.used_at(now)
            if found.percent == 0:
                detail = notices.hours_exhausted_text(cls, used)
                self._emit(self.HoursExhausted, now, found.at, agent_class=cls, used_us=used,
                           detail=detail)
                due.append(Notice(cls, Severity.EXPIRED, None, detail, kind="hours"))
                continue
            left = balance.left_at(now)
            severity = _HOURS_SEVERITY[found.percent]
            detail = notices.hours_left_text(cls, left, used, found.percent)
            self._emit(self.HoursNoticeIssued, now, found.at, agent_class=cls,
                       percent=found.percent, left_us=left, used_us=used, detail=detail)
            due.append(Notice(cls, severity, None, detail, kind="hours"))
        return due

    def _licence_due(self, now: datetime) -> list[Notice]:
        """Expiry, its warnings, and the export obligation: what is due by ``now``."""
        if now >= self.expires_at:
            # Seats held are kept (as under enforcement); new ones follow the trial rule.
            self._emit(self.LicenceExpired, now, self.expires_at)
            detail = notices.expired_text(self.licence_id, self.expires_at)
            return [Notice("licence", Severity.EXPIRED, self.expires_at, detail)]
        due: list[Notice] = []
        days = [d for d in EXPIRY_WARNING_DAYS if now >= self.expires_at - timedelta(days=d)
                and (not self.expiry_warned or d < self.expiry_warned)]
        if days:
            left = min(days)
            severity = (Severity.HOURS_LEFT if left <= 1 else
                        Severity.DAY_LEFT if left <= 7 else Severity.OPENED)
            detail = notices.expiry_warning_text(self.licence_id, self.expires_at, left)
            self._emit(self.LicenceNoticeIssued, now, kind="expiry", severity=severity,
                       days=left, detail=detail)
            due.append(Notice("licence", severity, self.expires_at, detail))
        since = self.export_due_since
        if since is None or self.export_overdue:
            return due
        elapsed = (now - since) // timedelta(days=1)
        tolerated = self.export_tolerated_days
        if now >= since + timedelta(days=tolerated):
            self._emit(self.ExportOverdue, now, days=elapsed, tolerated=tolerated)
            detail = notices.export_overdue_text(elapsed, tolerated)
            self._emit(self.LicenceNoticeIssued, now, kind="export", severity=Severity.EXPIRED,
                       days=elapsed, detail=detail)
            due.append(Notice("export", Severity.EXPIRED, None, detail))
        elif elapsed >= 2 and elapsed > self.export_warned_days:
            detail = notices.export_missing_text(elapsed, tolerated)
            self._emit(self.LicenceNoticeIssued, now, kind="export", severity=Severity.DAY_LEFT,
                       days=elapsed, detail=detail)
            due.append(Notice("export", Severity.DAY_LEFT, None, detail))
        return due

    def _licence_next_due(self) -> list[datetime]:
        if not self.in_force or self.expired:
            return []
        times = [self.expires_at]
        times += [self.expires_at - timedelta(days=d) for d in EXPIRY_WARNING_DAYS
                  if not self.expiry_warned or d < self.expiry_warned]
        since = self.export_due_since
        if since is not None and not self.export_overdue:
            times.append(since + timedelta(days=self.export_tolerated_days))
            times.append(since + timedelta(days=max(2, self.export_warned_days + 1)))
        return times

    def _transition(self, now: datetime, pool: Pool, t: grace.Transition) -> list[Notice]:
        if t.kind == grace.TransitionKind.REARM:
            self._emit(self.GraceRearmed, now, pool=pool.name, reason="rearm_after")
            return []
        if t.kind == grace.TransitionKind.NOTICE:
            assert pool.deadline is not None and t.severity is not None
            detail = notices.grace_ending_text(pool.name, pool.in_use, pool.limit,
                                               pool.deadline, pool.deadline - now)
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
        detail = notices.grace_expired_text(pool.name, pool.in_use, pool.limit, enforced)
        self._emit(self.AbuseNoticeIssued, now, deadline, pool=pool.name,
                   severity=Severity.EXPIRED, deadline=deadline, detail=detail)
        return [Notice(pool.name, Severity.EXPIRED, deadline, detail)]

    def next_due(self) -> datetime | None:
        """The earliest time at which :meth:`tick` will have something to do."""
        times = [t for p in self.pools.values() if (t := grace.next_due(p, self.policy))]
        times += self._licence_next_due()
        cutoff = timedelta(seconds=self.cutoff_seconds)
        times += [s.since + cutoff for s in self.sites.values()
                  if s.status == DISCONNECTED and s.since is not None]
        times += [t for b in (self.hours_balances or {}).values() if (t := hourly.next_due(b))]
        return min(times) if times else None

    def link_upstream(self, now: datetime, upstream: str, site: str, ca: str) -> bool:
        """Record that this master is chained under ``upstream`` as ``site`` (nothing if
        that is already recorded). Returns whether it recorded."""
        if self.upstream is not None and tuple(self.upstream) == (upstream, site, ca):
            return False  # (a snapshot may give it back as a list)
        self._emit(self.UpstreamLinked, now, upstream=upstream, site=site, ca=ca)
        return True

    def record_clock_step(self, now: datetime, wall: datetime, previous: datetime) -> None:
        self._emit(self.ClockStepped, now, wall_clock=wall, recorded=previous)

    def record_checkpoint(self, now: datetime, tree_size: int, root: bytes, note: str) -> None:
        self._emit(self.AuditCheckpointSigned, now, tree_size=tree_size, root=root, note=note)

    def record_export(self, now: datetime, day: str, first_id: int, last_id: int,
                      destination: str, sha256: str) -> None:
        """An export was delivered to ``destination``; when that is the licence's, it meets
        the export obligation (and restores grace if the obligation was breached)."""
        overdue = self.export_overdue
        self._emit(self.AuditTrailExported, now, day=day, first_id=first_id, last_id=last_id,
                   destination=destination, sha256=sha256)
        if overdue and self.delivers_to(destination):
            self._emit(self.ExportObligationRestored, now, day=day)

    def _site(self, name: str) -> Site:
        try:
            return self.sites[name]
        except KeyError:
            raise UnknownSiteError(f"site {name!r} is not enrolled") from None


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
