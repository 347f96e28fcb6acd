"""Pool state: what each recorded event does to a pool, in one pure transition.

A *pool* is what a limit is counted against: one agent class, or the combined PRED+ACD
total when the licence caps it (:func:`pool_limits` says which pools a licence has). Its
state is a frozen :class:`Pool`; :func:`apply_pool_event` is the only code that makes a new
one from an old one. The licence aggregate's event ``apply`` methods, the live-status
projection and the point-in-time projection all call it, so the three cannot drift apart.

Theory of operation (the decisions behind these events are :mod:`ledger.domain.grace`'s):

===================  ===========================================================
kind                 effect
===================  ===========================================================
LIMIT                new terms: the limit, and in-use recounted from the seats held
SEAT_GRANTED         in-use + 1
SEAT_RELEASED        in-use - 1
OVERUSE_STARTED      AVAILABLE/SPENT -> OPEN (opened at ``at``; severity and
                     enforcement reset); OPEN stays OPEN; deadline set; over-use on
OVERUSE_ENDED        over-use off (the window stays open)
NOTICE               severity raised to the notice's (never lowered)
GRACE_EXPIRED        -> SPENT, closed at the deadline; no deadline
ENFORCEMENT_STARTED  enforced
GRACE_REARMED        -> AVAILABLE, every window field cleared
===================  ===========================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum

import attrs

from ledger.domain.values import COMBINED_MEMBERS, COMBINED_POOL


class PoolState(StrEnum):
    """A pool's grace state; stored (in snapshots and views) as the string."""

    AVAILABLE = "available"  # over-use may open a window
    OPEN = "open"  # a window is open until the deadline
    SPENT = "spent"  # the window closed: over-limit grants are refused until re-armed


class PoolEventKind(StrEnum):
    """What happened to a pool. The values are the ``kind`` strings the point-in-time view
    stores in its pool history."""

    LIMIT = "limit"
    SEAT_GRANTED = "seat_granted"
    SEAT_RELEASED = "seat_released"
    OVERUSE_STARTED = "overuse_started"
    OVERUSE_ENDED = "overuse_ended"
    NOTICE = "notice"
    GRACE_EXPIRED = "grace_expired"
    ENFORCEMENT_STARTED = "enforcement_started"
    GRACE_REARMED = "grace_rearmed"


@attrs.frozen
class Pool:
    """Counting and grace state of one limit. Only :func:`apply_pool_event` makes new ones.

    The field order is stored (in aggregate snapshots): append new fields at the end only.
    """

    name: str
    members: tuple[str, ...]
    limit: int
    in_use: int = 0
    state: PoolState = PoolState.AVAILABLE
    deadline: datetime | None = None
    opened_at: datetime | None = None
    closed_at: datetime | None = None
    overuse: bool = False
    severity: int = 0
    enforced: bool = False

    @classmethod
    def new(cls, name: str, limit: int, in_use: int = 0) -> Pool:
        """A pool with no grace history, counting the members its name implies."""
        return cls(name, pool_members(name), limit, in_use)


def pool_members(name: str) -> tuple[str, ...]:
    """The agent classes a pool counts: PRED and ACD for the combined pool, else itself."""
    return COMBINED_MEMBERS if name == COMBINED_POOL else (name,)


def pool_limits(limits: Mapping[str, int], total_pred_acd: int | None) -> dict[str, int]:
    """The pools a licence's terms define, with their limits."""
    pools = dict(limits)
    if total_pred_acd is not None:
        pools[COMBINED_POOL] = total_pred_acd
    return pools


def apply_pool_event(
    pool: Pool,
    kind: PoolEventKind,
    at: datetime,
    *,
    deadline: datetime | None = None,
    severity: int = 0,
    limit: int | None = None,
    in_use: int | None = None,
) -> Pool:
    """The pool after one recorded event (see the table in the module docstring).

    ``at`` is when the event happened (its ``occurred_at``). ``deadline`` is for
    OVERUSE_STARTED, ``severity`` for NOTICE, ``limit`` and ``in_use`` (the recount) for
    LIMIT; other kinds ignore them.
    """
    # Seat events are most of the log: they take a fast path (no enum attribute lookups,
    # no evolve()); the match below is the whole table.
    if kind is _SEAT_GRANTED:
        return recounted(pool, pool.in_use + 1)
    if kind is _SEAT_RELEASED:
        return recounted(pool, pool.in_use - 1)
    evolve = attrs.evolve
    match kind:
        case PoolEventKind.SEAT_GRANTED:
            return recounted(pool, pool.in_use + 1)
        case PoolEventKind.SEAT_RELEASED:
            return recounted(pool, pool.in_use - 1)
        case PoolEventKind.LIMIT:
            return evolve(pool, limit=pool.limit if limit is None else limit,
                          in_use=pool.in_use if in_use is None else in_use)
        case PoolEventKind.OVERUSE_STARTED:
            if pool.state != PoolState.OPEN:
                pool = evolve(pool, state=PoolState.OPEN, opened_at=at, severity=0,
                              enforced=False)
            return evolve(pool, deadline=deadline, overuse=True)
        case PoolEventKind.OVERUSE_ENDED:
            return evolve(pool, overuse=False)
        case PoolEventKind.NOTICE:
            return evolve(pool, severity=max(pool.severity, severity))
        case PoolEventKind.GRACE_EXPIRED:
            closed = pool.deadline if pool.deadline is not None else at
            return evolve(pool, state=PoolState.SPENT, closed_at=closed, deadline=None)
        case PoolEventKind.ENFORCEMENT_STARTED:
            return evolve(pool, enforced=True)
        case PoolEventKind.GRACE_REARMED:
            return evolve(pool, state=PoolState.AVAILABLE, deadline=None, opened_at=None,
                          closed_at=None, severity=0, enforced=False, overuse=False)
    raise ValueError(f"not a pool event kind: {kind!r}")


_SEAT_GRANTED = PoolEventKind.SEAT_GRANTED
_SEAT_RELEASED = PoolEventKind.SEAT_RELEASED


def recounted(p: Pool, in_use: int) -> Pool:
    """``p`` with ``in_use`` seats: what any number of seat events do to a pool."""
    return Pool(p.name, p.members, p.limit, in_use, p.state, p.deadline, p.opened_at,
                p.closed_at, p.overuse, p.severity, p.enforced)


def within_local_limit(held_by_class: Mapping[str, int], limits: Mapping[str, int],
                       agent_class: str) -> bool:
    """Whether a site holding ``held_by_class`` seats may take one more ``agent_class`` seat
    under its local ``limits``. A class without a local limit is not capped locally (a
    slave that is offline has its own rule for that case)."""
    limit = limits.get(agent_class)
    return limit is None or held_by_class.get(agent_class, 0) + 1 <= limit
