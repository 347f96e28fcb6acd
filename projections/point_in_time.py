"""Point in time: every seat ever held (from, to, why released), every refusal with its
reason, and each pool's limits and grace transitions — so that an auditor can ask who held
which seat at instant T, what one user did, and why a request was refused.

Times here are when things happened (``occurred_at``): a site's offline seats appear at the
times the site held them, even though the master recorded them later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs
from sqlalchemy import Connection, and_, func, or_, select

from ledger.domain.licence import Licence
from ledger.domain.outcomes import UPSTREAM_PREFIX
from ledger.domain.pools import (
    Pool,
    PoolEventKind,
    PoolState,
    apply_pool_event,
    pool_limits,
    pool_members,
)
from ledger.domain.values import AGENT_CLASSES, COMBINED_POOL, RefusalReason

from .base import Handler, Projection
from .engine import execute_many, write_rows
from .errors import ProjectionError
from .labels import Labels, labels_for
from .schema import TABLES_BY_PROJECTION, pit_pool_events, pit_refusals, pit_seats
from .timestamps import from_us, maybe_from_us, to_us

_RELEASE = ('UPDATE "view_pit_seats" SET "release_id" = ?, "released_us" = ?, '
            '"release_reason" = ?, "release_offline" = ? WHERE "grant_id" = ?')


class PointInTimeProjection(Projection):
    """Seat intervals, refusals and pool history (DESIGN.md section 6)."""

    name = "point_in_time"
    tables = TABLES_BY_PROJECTION["point_in_time"]

    def __init__(self, labels: Labels | None = None) -> None:
        super().__init__(labels)
        self._reset()

    def _reset(self) -> None:
        self._open: dict[tuple[str, str], int] = {}
        # Rows as tuples in their table's column order (see projections.schema), labels
        # sealed. Tuples of plain values drop out of the cyclic collector's sight; lists
        # would not.
        self._new_seats: dict[int, tuple[Any, ...]] = {}
        self._releases: list[tuple[Any, ...]] = []
        self._refusals: list[tuple[Any, ...]] = []
        self._pool_events: list[tuple[Any, ...]] = []

    def load(self, conn: Connection) -> None:
        self._reset()
        held = select(pit_seats.c.site, pit_seats.c.user, pit_seats.c.grant_id).where(
            pit_seats.c.released_us.is_(None))
        site, user = self.labels.site.open, self.labels.user.open
        self._open = {(site(s), user(u)): gid for s, u, gid in conn.execute(held)}

    def flush(self, conn: Connection) -> None:
        write_rows(conn, pit_seats, list(self._new_seats.values()))
        execute_many(conn, _RELEASE, self._releases)
        write_rows(conn, pit_refusals, self._refusals)
        write_rows(conn, pit_pool_events, self._pool_events)
        self._new_seats, self._releases, self._refusals, self._pool_events = {}, [], [], []

    def handlers(self) -> Mapping[type, Handler]:
        L = Licence
        return {
            L.SeatGranted: self._granted, L.SeatReleased: self._released,
            L.SeatRefused: self._refused, L.LicenceIssued: self._terms,
            L.LicenceAmended: self._terms, L.LicenceInstalled: self._terms,
            L.LicenceExpired: self._licence_expired,
            L.OveruseStarted: self._pool_event, L.OveruseEnded: self._pool_event,
            L.AbuseNoticeIssued: self._pool_event, L.GraceExpired: self._pool_event,
            L.EnforcementStarted: self._pool_event, L.GraceRearmed: self._pool_event,
        }

    def _granted(self, nid: int, e: Any) -> None:
        granted = to_us(e.occurred_at)
        recorded = granted if e.timestamp is e.occurred_at else to_us(e.timestamp)
        labels = self.labels
        self._new_seats[nid] = (
            nid, labels.site.seal(e.site), labels.user.seal(e.user), e.seat, e.agent_class,
            labels.tenant.seal(e.tenant), labels.campaign.seal(e.campaign), e.overuse,
            e.offline, granted, recorded, None, None, None, None)
        self._open[(e.site, e.user)] = nid

    def _released(self, nid: int, e: Any) -> None:
        try:
            gid = self._open.pop((e.site, e.user))
        except KeyError:
            raise ProjectionError(
                f"record {nid}: release of a seat the point-in-time view does not hold "
                f"({e.site}/{e.user}): rebuild it with "
                "'seatledger projections rebuild point_in_time'") from None
        released = to_us(e.occurred_at)
        pending = self._new_seats.get(gid)
        if pending is not None:
            self._new_seats[gid] = (*pending[:11], nid, released, e.reason, e.offline)
        else:
            self._releases.append((nid, released, e.reason, e.offline, gid))

    def _refused(self, nid: int, e: Any) -> None:
        labels = self.labels
        self._refusals.append((nid, to_us(e.occurred_at), labels.site.seal(e.site),
                               labels.user.seal(e.user), e.agent_class,
                               labels.tenant.seal(e.tenant), labels.campaign.seal(e.campaign),
                               e.reason, labels.detail.seal(e.detail)))

    def _add_pool_event(self, nid: int, index: int, e: Any, pool: str, kind: str,
                        **fields: Any) -> None:
        row: dict[str, Any] = {"in_use": None, "limit": None, "deadline_us": None,
                               "detail": ""}
        row.update(fields)
        self._pool_events.append((nid * 8 + index, to_us(e.occurred_at), pool, kind,
                                  row["in_use"], row["limit"], row["deadline_us"],
                                  self.labels.detail.seal(row["detail"])))

    def _terms(self, nid: int, e: Any) -> None:
        limits = pool_limits(e.limits, e.total_pred_acd)
        for i, (pool, limit) in enumerate(sorted(limits.items())):
            self._add_pool_event(nid, i, e, pool, PoolEventKind.LIMIT, limit=limit,
                                 detail=f"{type(e).__name__}: {pool} limit {limit}")

    def _licence_expired(self, nid: int, e: Any) -> None:
        self._add_pool_event(nid, 0, e, "*", "licence_expired", detail="the licence expired")

    def _pool_event(self, nid: int, e: Any) -> None:
        fields: dict[str, Any] = {}
        for name in ("in_use", "limit", "detail"):
            if hasattr(e, name):
                fields[name] = getattr(e, name)
        if getattr(e, "deadline", None) is not None:
            fields["deadline_us"] = to_us(e.deadline)
        if hasattr(e, "reason"):
            fields["detail"] = f"re-armed: {e.reason}"
        self._add_pool_event(nid, 0, e, e.pool, str(e.pool_event_kind), **fields)


# ------------------------------------------------------------------ answers
@attrs.frozen
class SeatSpan:
    """One seat held by one user at one site, from ``granted_at`` to ``released_at``."""

    site: str
    user: str
    seat: int
    agent_class: str
    tenant: str
    campaign: str
    overuse: bool
    offline: bool
    granted_at: datetime
    recorded_at: datetime
    released_at: datetime | None
    release_reason: str | None


@attrs.frozen
class PoolAt:
    """A pool as it stood at an instant: seats in use, limit, grace state."""

    pool: str
    in_use: int
    limit: int | None
    grace: PoolState
    deadline: datetime | None
    enforced: bool


@attrs.frozen
class StateAt:
    """The answer to "who held which seat at T" (for one site, or all)."""

    at: datetime
    site: str | None
    seats: tuple[SeatSpan, ...]
    pools: tuple[PoolAt, ...]

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self, recurse=True)


@attrs.frozen
class HistoryEntry:
    """One thing that happened to a user's seat: granted, released or refused."""

    at: datetime
    kind: str  # granted | released | refused
    site: str
    agent_class: str
    seat: int | None
    tenant: str
    campaign: str
    reason: str
    detail: str


@attrs.frozen
class RefusalAnswer:
    """Why a request was refused: the recorded reason and the pool's history behind it."""

    at: datetime
    site: str
    user: str
    agent_class: str
    reason: str
    detail: str
    explanation: str
    pools: tuple[PoolAt, ...]


_SEAT_COLUMNS = (pit_seats.c.site, pit_seats.c.user, pit_seats.c.seat, pit_seats.c.agent_class,
                 pit_seats.c.tenant, pit_seats.c.campaign, pit_seats.c.overuse,
                 pit_seats.c.offline, pit_seats.c.granted_us, pit_seats.c.recorded_us,
                 pit_seats.c.released_us, pit_seats.c.release_reason)


def _span(r: Sequence[Any], labels: Labels) -> SeatSpan:
    return SeatSpan(site=labels.site.open(r[0]), user=labels.user.open(r[1]), seat=r[2],
                    agent_class=r[3], tenant=labels.tenant.open(r[4]),
                    campaign=labels.campaign.open(r[5]), overuse=bool(r[6]), offline=bool(r[7]),
                    granted_at=from_us(r[8]), recorded_at=from_us(r[9]),
                    released_at=maybe_from_us(r[10]), release_reason=r[11])


def _held_at(us: int) -> Any:
    return and_(pit_seats.c.granted_us <= us,
                or_(pit_seats.c.released_us.is_(None), pit_seats.c.released_us > us))


def state_at(conn: Connection, at: datetime, site: str | None = None) -> StateAt:
    """The seats held at instant ``at`` (optionally at one site) and each pool's state."""
    us = to_us(at)
    labels = labels_for(conn)
    query = select(*_SEAT_COLUMNS).where(_held_at(us))
    if site is not None:
        query = query.where(pit_seats.c.site == labels.site.seal(site))
    # Sorted once opened: the stored labels are sealed, and sort in no useful order.
    seats = tuple(sorted((_span(r, labels) for r in conn.execute(query)),
                         key=lambda s: (s.site, s.user)))
    return StateAt(at=at, site=site, seats=seats, pools=pools_at(conn, us))


def pools_at(conn: Connection, us: int, classes: Sequence[str] | None = None, *,
             before_id: int | None = None) -> tuple[PoolAt, ...]:
    """Each pool's seats in use (all sites), limit and grace state at ``us``.

    With ``before_id``, the state just before that record was written instead (the state
    the ledger decided on), following the log's order rather than the clock.
    """
    if before_id is None:
        held, recorded = _held_at(us), pit_pool_events.c.at_us <= us
    else:
        held = and_(pit_seats.c.grant_id < before_id,
                    or_(pit_seats.c.release_id.is_(None), pit_seats.c.release_id > before_id))
        recorded = pit_pool_events.c.id < before_id * 8
    counts: dict[str, int] = dict(conn.execute(
        select(pit_seats.c.agent_class, func.count()).where(held)
        .group_by(pit_seats.c.agent_class)).all())
    history = conn.execute(
        select(pit_pool_events.c.pool, pit_pool_events.c.kind, pit_pool_events.c.limit,
               pit_pool_events.c.deadline_us, pit_pool_events.c.at_us)
        .where(recorded).order_by(pit_pool_events.c.id)).all()
    # Replayed through the ledger's own pool transition; seats are counted separately (from
    # the seat intervals), and a pool without a recorded limit shows none.
    state: dict[str, Pool] = {}
    limits: dict[str, int] = {}
    for pool, kind, limit, deadline, at in history:
        if pool == "*":
            continue
        if pool not in state:
            state[pool] = Pool.new(pool, 0)
        if kind == PoolEventKind.LIMIT:
            limits[pool] = limit
        state[pool] = apply_pool_event(state[pool], PoolEventKind(kind), from_us(at),
                                       deadline=maybe_from_us(deadline), limit=limit)
    names = [p for p in (*AGENT_CLASSES, COMBINED_POOL) if p in state]
    if classes is not None:
        names = [p for p in names if any(c in pool_members(p) for c in classes)]
    return tuple(
        PoolAt(pool=p, in_use=sum(counts.get(c, 0) for c in pool_members(p)),
               limit=limits.get(p), grace=state[p].state, deadline=state[p].deadline,
               enforced=state[p].enforced)
        for p in names)


def user_history(conn: Connection, user: str, site: str | None = None) -> tuple[HistoryEntry, ...]:
    """Everything recorded about ``user``'s seats, oldest first, with reasons."""
    labels = labels_for(conn)
    sealed = labels.user.seal(user)
    seats = select(*_SEAT_COLUMNS, pit_seats.c.grant_id, pit_seats.c.release_id).where(
        pit_seats.c.user == sealed)
    refusals = select(pit_refusals).where(pit_refusals.c.user == sealed)
    if site is not None:
        seats = seats.where(pit_seats.c.site == labels.site.seal(site))
        refusals = refusals.where(pit_refusals.c.site == labels.site.seal(site))
    entries: list[tuple[int, int, HistoryEntry]] = []
    for r in conn.execute(seats):
        span = _span(r, labels)
        how = "offline, " if span.offline else ""
        entries.append((r[8], r[12], HistoryEntry(
            at=span.granted_at, kind="granted", site=span.site, agent_class=span.agent_class,
            seat=span.seat, tenant=span.tenant, campaign=span.campaign,
            reason="overuse" if span.overuse else "within_limit",
            detail=f"{how}seat {span.seat}" + (" over the limit" if span.overuse else ""))))
        if span.released_at is not None:
            entries.append((r[10], r[13], HistoryEntry(
                at=span.released_at, kind="released", site=span.site,
                agent_class=span.agent_class, seat=span.seat, tenant=span.tenant,
                campaign=span.campaign, reason=span.release_reason or "",
                detail=_RELEASE_TEXT.get(span.release_reason or "", ""))))
    for f in conn.execute(refusals).mappings():
        entries.append((f["at_us"], f["id"], HistoryEntry(
            at=from_us(f["at_us"]), kind="refused", site=labels.site.open(f["site"]),
            agent_class=f["agent_class"], seat=None, tenant=labels.tenant.open(f["tenant"]),
            campaign=labels.campaign.open(f["campaign"]), reason=f["reason"],
            detail=labels.detail.open(f["detail"]))))
    entries.sort(key=lambda e: (e[0], e[1]))
    return tuple(e for _, _, e in entries)


_RELEASE_TEXT = {
    "logoff": "the agent logged off",
    "reconciled": "the site no longer held it when it reconnected",
    "site_cut_off": "the site dropped it itself when it was cut off from the master",
    "operator": "released by an operator (site release, or the site revoked)",
    "expired": "the licence expired",
}

_REFUSAL_TEXT = {
    RefusalReason.LIMIT_ENFORCED: "the class was over its limit and its grace period was "
                                  "already spent, so the limit was enforced",
    RefusalReason.OVERUSE_CEILING: "the grace window was open but the over-use ceiling was "
                                   "reached",
    RefusalReason.SITE_LIMIT: "the site's own local limit for the class was reached",
    RefusalReason.LICENCE_EXPIRED: "the licence had expired",
    RefusalReason.CLASS_NOT_LICENSED: "the licence does not cover this agent class",
    RefusalReason.UNKNOWN_SITE: "the site was not enrolled",
    RefusalReason.SITE_REVOKED: "the site had been revoked",
    RefusalReason.HOURS_EXHAUSTED: "the class's pre-paid agent-hours were used up",
}


def refusal_text(reason: str) -> str:
    """A refusal's reason in words; a chained master's ``upstream:<reason>`` names the
    upstream's."""
    if reason.startswith(UPSTREAM_PREFIX):
        return ("the upstream master this one is chained under refused it: "
                + refusal_text(reason.removeprefix(UPSTREAM_PREFIX)))
    return _REFUSAL_TEXT.get(reason, reason)  # type: ignore[call-overload, no-any-return]


def why_refused(conn: Connection, user: str, *, at: datetime | None = None,
                site: str | None = None) -> tuple[RefusalAnswer, ...]:
    """The user's refusals (all, or the last one at or before ``at``), each explained."""
    labels = labels_for(conn)
    query = select(pit_refusals).where(pit_refusals.c.user == labels.user.seal(user))
    if site is not None:
        query = query.where(pit_refusals.c.site == labels.site.seal(site))
    if at is not None:
        query = query.where(pit_refusals.c.at_us <= to_us(at)).order_by(
            pit_refusals.c.at_us.desc(), pit_refusals.c.id.desc()).limit(1)
    else:
        query = query.order_by(pit_refusals.c.at_us, pit_refusals.c.id)
    answers = []
    for r in conn.execute(query).mappings():
        pools = pools_at(conn, r["at_us"], [r["agent_class"]], before_id=r["id"])
        text = refusal_text(r["reason"])
        context = "; ".join(
            f"{p.pool} {p.in_use} in use, limit {p.limit}, grace {p.grace}"
            + (" (enforced)" if p.enforced else "")
            + (f" until {p.deadline:%Y-%m-%d %H:%M}Z" if p.deadline else "")
            for p in pools)
        if r["reason"] in (RefusalReason.LIMIT_ENFORCED, RefusalReason.OVERUSE_CEILING):
            text += _grace_story(conn, r["id"], [p.pool for p in pools])
        answers.append(RefusalAnswer(
            at=from_us(r["at_us"]), site=labels.site.open(r["site"]), user=user,
            agent_class=r["agent_class"], reason=r["reason"],
            detail=labels.detail.open(r["detail"]),
            explanation=text + (f". At the time: {context}" if context else ""),
            pools=pools))
    return tuple(answers)


def _grace_story(conn: Connection, before_id: int, pools: Sequence[str]) -> str:
    rows = conn.execute(
        select(pit_pool_events.c.pool, pit_pool_events.c.kind, pit_pool_events.c.at_us)
        .where((pit_pool_events.c.id < before_id * 8) & pit_pool_events.c.pool.in_(pools)
               & pit_pool_events.c.kind.in_(("overuse_started", "grace_expired",
                                             "grace_rearmed")))
        .order_by(pit_pool_events.c.id)).all()
    opened: dict[str, int] = {}
    expired: dict[str, int] = {}
    for pool, kind, when in rows:
        if kind == "overuse_started" and pool not in opened:
            opened[pool] = when
        elif kind == "grace_expired":
            expired[pool] = when
        elif kind == "grace_rearmed":
            opened.pop(pool, None)
            expired.pop(pool, None)
    parts = [f"{p}: grace opened {from_us(opened[p]):%Y-%m-%d %H:%M}Z"
             + (f", expired {from_us(expired[p]):%Y-%m-%d %H:%M}Z" if p in expired else "")
             for p in pools if p in opened]
    return f" ({'; '.join(parts)})" if parts else ""


def pool_windows(conn: Connection, start: datetime, end: datetime) -> dict[str, list[dict[str, Any]]]:
    """Per pool, its over-use, grace and enforcement windows overlapping [start, end).

    Each window is ``{"kind": "overuse"|"grace"|"enforced", "start": dt, "end": dt}``:
    over-use from OveruseStarted to OveruseEnded, grace from the window's opening to its
    expiry, enforced from the expiry (grace spent) to the re-arming. A window still open at
    ``end`` ends there. For the HTML report's shading.
    """
    s_us, e_us = to_us(start), to_us(end)
    rows = conn.execute(
        select(pit_pool_events.c.pool, pit_pool_events.c.kind, pit_pool_events.c.at_us)
        .where(pit_pool_events.c.at_us < e_us).order_by(pit_pool_events.c.id)).all()
    opened: dict[tuple[str, str], int] = {}
    windows: dict[str, list[dict[str, Any]]] = {}

    def close(pool: str, kind: str, at: int) -> None:
        began = opened.pop((pool, kind), None)
        if began is not None and at > s_us and at > began:
            windows.setdefault(pool, []).append(
                {"kind": kind, "start": from_us(max(began, s_us)), "end": from_us(min(at, e_us))})

    for pool, kind, at in rows:
        if kind == "overuse_started":
            opened.setdefault((pool, "overuse"), at)
            opened.setdefault((pool, "grace"), at)
        elif kind == "overuse_ended":
            close(pool, "overuse", at)
        elif kind == "grace_expired":
            close(pool, "grace", at)
            opened.setdefault((pool, "enforced"), at)
        elif kind == "grace_rearmed":
            for k in ("overuse", "grace", "enforced"):
                close(pool, k, at)
    for pool, kind in list(opened):
        close(pool, kind, e_us)
    return windows


__all__ = ["HistoryEntry", "PointInTimeProjection", "PoolAt", "RefusalAnswer", "SeatSpan",
           "StateAt", "pool_windows", "pools_at", "state_at", "user_history", "why_refused"]
