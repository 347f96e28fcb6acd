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


def expiry_warning_text(licence_id: str, expires_at: datetime, days: int) -> str:
    """The licence expires in ``days`` days."""
    return (f"licence {licence_id} expires {expires_at:%Y-%m-%d %H:%M}Z (in {days} day"
            f"{'' if days == 1 else 's'}): install the renewal from the vendor")


def expired_text(licence_id: str, expires_at: datetime) -> str:
    return (f"licence {licence_id} expired {expires_at:%Y-%m-%d %H:%M}Z: seats held are kept; "
            "new seats follow the trial rule until a new licence is installed")


def export_missing_text(days: int, tolerated: int) -> str:
    """No export has been delivered to the licence's destination for ``days`` days."""
    return (f"no audit export delivered to the vendor for {days} days; over-use grace is "
            f"withdrawn after {tolerated}")


def export_overdue_text(days: int, tolerated: int) -> str:
    return (f"no audit export delivered to the vendor for {days} days (the licence tolerates "
            f"{tolerated}): over-use grace is withdrawn until the next delivered export")


def export_restored_text(day: str) -> str:
    return f"audit export of {day} delivered: over-use grace is available again"


def hours_left_text(agent_class: str, left_us: int, used_us: int, percent: int) -> str:
    """``percent`` of ``agent_class``'s agent-hours are left (the hours licence's notice)."""
    return (f"{agent_class} hours licence: at most {max(left_us, 0) / 3_600_000_000:.0f} "
            f"agent-hours left ({percent} %) after {used_us / 3_600_000_000:.0f} used")


def hours_exhausted_text(agent_class: str, used_us: int) -> str:
    return (f"{agent_class} hours licence used up ({used_us / 3_600_000_000:.0f} agent-hours "
            f"used): new {agent_class} seats are refused until a licence adds hours; seats "
            "held are kept")


def hours_overdrawn_text(site: str, agent_class: str, left_us: int) -> str:
    """A site's offline use, synced, drew on ``agent_class`` hours that were used up."""
    return (f"site {site} used {agent_class} agent-hours while offline beyond the licence's: "
            f"{max(-left_us, 0) / 3_600_000_000:.2f} agent-hours overdrawn")


def notice_kind(notice: Notice) -> str:
    """What a notice is about, as the wire and the alerts name it: ``hours`` (an hours
    licence's notice), ``licence`` (expiry), ``export`` (the export obligation),
    ``enforcement`` (a grace window closed) or ``overuse``."""
    if notice.kind == "hours":
        return "hours"
    if notice.pool in ("licence", "export"):
        return notice.pool
    return "enforcement" if notice.severity == Severity.EXPIRED else "overuse"
