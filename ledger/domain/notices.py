"""The texts of abuse notices, in one place: the ledger records them (AbuseNoticeIssued
``detail``) and the master sends the same words to every connected site."""

from __future__ import annotations

from datetime import datetime, timedelta

from ledger.domain.outcomes import Notice
from ledger.domain.values import Severity


def grace_opened_text(pool: str, in_use: int, limit: int, deadline: datetime) -> str:
    """Over-use has opened ``pool``'s grace window, which ends at ``deadline``."""
    return (f"{pool} over-use: {in_use} in use, limit {limit}; "
            f"grace until {deadline:%Y-%m-%d %H:%M}Z")


def grace_ending_text(pool: str, in_use: int, limit: int, deadline: datetime,
                      left: timedelta) -> str:
    """A reminder that ``pool``'s grace window ends at ``deadline``, ``left`` from now."""
    hours = max(left.total_seconds(), 0) / 3600
    return (f"{pool} over-use grace ends {deadline:%Y-%m-%d %H:%M}Z "
            f"({hours:.0f}h left): {in_use} in use, limit {limit}")


def grace_expired_text(pool: str, in_use: int, limit: int, enforced: bool) -> str:
    """``pool``'s grace window has closed; ``enforced`` if it was still over its limit."""
    return (f"{pool} grace expired: limit {limit} now enforced"
            + (f" ({in_use} in use; new seats refused)" if enforced else ""))


def offline_overuse_text(site: str, agent_class: str) -> str:
    """A site granted a seat over an enforced limit while it could not reach the master."""
    return f"site {site} granted {agent_class} over the enforced limit while offline"


def grace_opened(pool: str, in_use: int, limit: int, deadline: datetime) -> Notice:
    """The notice sent when over-use opens ``pool``'s grace window."""
    return Notice(pool, Severity.OPENED, deadline,
                  grace_opened_text(pool, in_use, limit, deadline))


def clock_stepped_text(wall: datetime, expected: datetime) -> str:
    """The master's wall clock was moved: recorded time and every deadline ignore the step."""
    delta = (wall - expected).total_seconds()
    direction = "back" if delta < 0 else "forward"
    return (f"the master's clock was set {direction} by {abs(delta) / 3600:.1f}h "
            f"(reads {wall:%Y-%m-%d %H:%M}Z, should read {expected:%Y-%m-%d %H:%M}Z); "
            "recorded time and grace deadlines are unaffected, and the step is on record")
