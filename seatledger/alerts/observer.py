"""What the master observes, as alerts: the one place that decides what people hear about."""

from __future__ import annotations

from datetime import datetime

from ledger import Severity, SiteState
from ledger.domain.notices import notice_kind
from seatledger.alerts._alert import Alert
from seatledger.master.server import NoticeIssued, Observed, SiteStateChanged

# Notice severities as alert severities: a window opening is a warning, its end critical.
_SEVERITY = {Severity.OPENED: "warning", Severity.DAY_LEFT: "warning",
             Severity.HOURS_LEFT: "critical", Severity.EXPIRED: "critical"}


def observed_alert(what: Observed, at: datetime) -> Alert | None:
    """The alert for something the master observed, or None if nobody needs to hear of it.

    Notices: ``overuse`` and ``enforcement`` for a pool, ``licence`` (expiry), ``export``
    (the export obligation). Sites: ``site_cut_off``, and ``site_reconnected`` when a site
    that was cut off is connected again.
    """
    match what:
        case NoticeIssued(notice):
            kind = notice_kind(notice)
            return Alert(kind, _SEVERITY.get(notice.severity, "warning"), notice.detail, at)
        case SiteStateChanged(site, SiteState.CUT_OFF, _):
            return Alert("site_cut_off", "critical",
                         f"site {site} is cut off: it has not reached the master within the "
                         "cut-off time", at, site=site)
        case SiteStateChanged(site, SiteState.CONNECTED, SiteState.CUT_OFF):
            return Alert("site_reconnected", "info",
                         f"site {site} reconnected after being cut off", at, site=site)
    return None


def export_failed_alert(error: str, at: datetime) -> Alert:
    return Alert("export_failed", "critical",
                 f"daily audit export failed (retried at the next run): {error}", at)


def child_alert(name: str, state: str, last_exit: int | None, restarts: int,
                at: datetime) -> Alert | None:
    """The alert for a supervised child's new state: restarting, or given up."""
    if state == "backing_off":
        return Alert("follower_failed", "warning",
                     f"{name} exited with {last_exit}; restarting (restarts so far: "
                     f"{restarts})", at)
    if state == "gave_up":
        return Alert("follower_failed", "critical",
                     f"{name} exited with {last_exit}; gave up after {restarts} restarts", at)
    return None


__all__ = ["child_alert", "export_failed_alert", "observed_alert"]
