"""The grace policy: DESIGN.md section 3, rules 1-6, in one place.

A *pool* is what a limit is counted against: one agent class (PRED, ACD, PBX, VIR) or the
combined PRED+ACD total when the licence caps it. Each pool has a grace state:

* AVAILABLE - over-use may open a window.
* OPEN      - a window is open until ``deadline``; over-limit grants are granted (up to the
              ceiling, if the licence sets one).
* SPENT     - the window has closed; over-limit grants are refused (``limit_enforced``) until
              grace is re-armed by an amendment or after ``rearm_seconds``.

Rule 1: a grant that keeps in-use <= limit is granted.
Rule 2: a grant above the limit while AVAILABLE opens the window (deadline = now + grace);
        while OPEN it is granted (up to the ceiling). Dropping back under the limit ends the
        over-use but not the window.
Rule 3: at the deadline the window closes (GraceExpired); if still above the limit,
        enforcement starts. SPENT refuses over-limit grants; seats held are never revoked.
Rule 4: grace re-arms when new terms (a newly installed vendor-signed licence) raise the
        pool's limit -- identical or lower terms do not (:func:`rearmed_by`) -- or
        ``rearm_seconds`` after the window closed.
Rule 5: deadlines fire without requests: :func:`due_transitions` is what the timer calls.
Rule 6: time is always passed in; nothing here reads a clock.

The functions here decide; :mod:`ledger.domain.licence` records the decisions as events, and
:func:`ledger.domain.pools.apply_pool_event` is what those events do to a pool.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum

import attrs

from ledger.domain.pools import Pool, PoolState
from ledger.domain.values import GracePolicy, RefusalReason, Severity

# Kept for callers of the first version; the states are PoolState's.
AVAILABLE = PoolState.AVAILABLE
OPEN = PoolState.OPEN
SPENT = PoolState.SPENT

# Notices before the deadline: (severity, time left when it is due).
NOTICE_SCHEDULE: tuple[tuple[Severity, timedelta], ...] = (
    (Severity.DAY_LEFT, timedelta(hours=24)),
    (Severity.HOURS_LEFT, timedelta(hours=4)),
)

__all__ = ["AVAILABLE", "NOTICE_SCHEDULE", "OPEN", "SPENT", "Admission", "Pool", "PoolState",
           "Transition", "TransitionKind", "admit", "ceiling", "deadline_for",
           "due_transitions", "next_due", "rearmed_by"]


@attrs.frozen
class Admission:
    """What the policy says about one more seat in a set of pools."""

    refusal: RefusalReason | None = None
    refused_pool: str | None = None
    overuse: bool = False
    opens: tuple[str, ...] = ()  # pools whose window this grant opens
    resumes: tuple[str, ...] = ()  # pools whose open window sees over-use start again


def ceiling(pool: Pool, policy: GracePolicy) -> int | None:
    if policy.ceiling_percent is None:
        return None
    return math.floor(pool.limit * policy.ceiling_percent / 100)


def admit(pools: Iterable[Pool], policy: GracePolicy, *, offline: bool = False,
          withdrawn: bool = False) -> Admission:
    """Decide one more seat against every pool it counts in.

    ``offline`` is for seats a site already granted while cut off from the master: they
    happened, so they are never refused here; they are flagged as over-use and open a window
    where one is available. ``withdrawn``: over-use grace is withdrawn (the licence's export
    obligation is breached), so every over-limit grant is refused (``export_overdue``).
    """
    opens: list[str] = []
    resumes: list[str] = []
    overuse = False
    for pool in pools:
        after = pool.in_use + 1
        if after <= pool.limit:
            continue  # rule 1
        overuse = True
        if not offline:
            if pool.state == SPENT:
                return Admission(refusal=RefusalReason.LIMIT_ENFORCED, refused_pool=pool.name)
            if withdrawn:
                return Admission(refusal=RefusalReason.EXPORT_OVERDUE, refused_pool=pool.name)
            cap = ceiling(pool, policy)
            if cap is not None and after > cap:
                return Admission(refusal=RefusalReason.OVERUSE_CEILING, refused_pool=pool.name)
        if pool.state == AVAILABLE:
            opens.append(pool.name)  # rule 2: open the window
        elif pool.state == OPEN and not pool.overuse:
            resumes.append(pool.name)
    return Admission(overuse=overuse, opens=tuple(opens), resumes=tuple(resumes))


def rearmed_by(pools: Iterable[Pool], new_limits: Mapping[str, int]) -> list[str]:
    """Rule 4: the pools whose grace new terms re-arm -- those with a window open or spent
    whose limit the new terms raise. ``new_limits`` are per pool (see ``pool_limits``)."""
    return [p.name for p in pools
            if p.state != AVAILABLE and new_limits.get(p.name, 0) > p.limit]


def deadline_for(start: datetime, policy: GracePolicy) -> datetime:
    return start + timedelta(seconds=policy.grace_seconds)


class TransitionKind(StrEnum):
    """What :func:`due_transitions` can find due at a pool."""

    NOTICE = "notice"  # a reminder as the deadline nears
    EXPIRE = "expire"  # the deadline: the window closes (rule 3)
    REARM = "rearm"  # rearm_seconds after the window closed (rule 4)


@attrs.frozen
class Transition:
    """Something due at a pool at a given time (rules 3, 4 and the notice schedule)."""

    kind: TransitionKind
    pool: str
    severity: Severity | None = None  # of the notice a NOTICE or EXPIRE sends


def due_transitions(pool: Pool, now: datetime, policy: GracePolicy) -> list[Transition]:
    """What is due at ``pool`` by ``now``, in the order it must be recorded."""
    if pool.state == OPEN and pool.deadline is not None:
        if now >= pool.deadline:
            return [Transition(TransitionKind.EXPIRE, pool.name, Severity.EXPIRED)]
        due = []
        for severity, left in NOTICE_SCHEDULE:
            at = pool.deadline - left
            opened = pool.opened_at or at
            if pool.severity < severity and now >= at and at > opened:
                due.append(Transition(TransitionKind.NOTICE, pool.name, severity))
        return due[-1:]  # only the most severe one that is due
    if pool.state == SPENT and pool.closed_at is not None:
        if now >= pool.closed_at + timedelta(seconds=policy.rearm_seconds):
            return [Transition(TransitionKind.REARM, pool.name)]
    return []


def next_due(pool: Pool, policy: GracePolicy) -> datetime | None:
    """When :func:`due_transitions` will next have something for this pool."""
    if pool.state == OPEN and pool.deadline is not None:
        times = [pool.deadline]
        for severity, left in NOTICE_SCHEDULE:
            at = pool.deadline - left
            if pool.severity < severity and at > (pool.opened_at or at):
                times.append(at)
        return min(times)
    if pool.state == SPENT and pool.closed_at is not None:
        return pool.closed_at + timedelta(seconds=policy.rearm_seconds)
    return None
