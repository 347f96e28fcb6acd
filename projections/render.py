"""Read-model answers as text: aligned tables, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs

from ledger.domain.hours import US_PER_HOUR, Balance
from ledger.domain.values import RefusalReason

from .live_status import Status
from .point_in_time import HistoryEntry, RefusalAnswer, StateAt
from .usage import HoursUsage, UsageReport

REFUSAL_REASONS: tuple[str, ...] = (
    RefusalReason.LIMIT_ENFORCED, RefusalReason.OVERUSE_CEILING, RefusalReason.SITE_LIMIT,
    RefusalReason.LICENCE_EXPIRED, RefusalReason.CLASS_NOT_LICENSED, RefusalReason.UNKNOWN_SITE,
    RefusalReason.SITE_REVOKED, RefusalReason.HOURS_EXHAUSTED,
)


# The usage CSV's last columns: a class's agent-hours in the period (hours licences).
HOURS_COLUMNS: tuple[str, ...] = ("hours_licensed", "hours_granted", "hours_used",
                                  "hours_charged", "hours_left", "hours_overdrawn")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
          right: Sequence[int] = ()) -> str:
    """Columns padded to width; the columns whose index is in ``right`` align right."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def when(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%SZ") -> str:
    return "" if value is None else value.strftime(fmt)


def _span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return f"{days}d {hours}h" if days else f"{hours}h {minutes:02d}m"


def _counts(counts: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(counts.items()))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if attrs.has(type(value)):
        return attrs.asdict(value, recurse=True)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(type(value).__name__)


def to_json(data: Any) -> str:
    """JSON with datetimes as ISO 8601 and attrs values as objects."""
    return json.dumps(data, default=_json_default)


# ------------------------------------------------------------------ live status
def render_status_table(status: Status | None, now: datetime | None = None) -> str:
    """The live status as a readable table. ``now`` (ledger time) shows time left."""
    if status is None:
        return "no licence has been issued yet"
    now = now or status.last_event_at
    if not status.serial and not status.licensed:
        head = ("TRIAL: no vendor-signed licence is installed; at most 5 seats and 4 campaigns, "
                "no over-use grace")
    else:
        head = (f"licence {status.licence_id} (serial {status.serial})  customer "
                f"{status.customer}  expires {when(status.expires_at, '%Y-%m-%d')}"
                + (f" ({_span((status.expires_at - now).total_seconds())} left)"
                   if status.expires_at > now else ""))
        if status.expired:
            head += ("\nEXPIRED: new seats follow the trial rule (5 seats, 4 campaigns) until "
                     "a new licence is installed")
    if status.export_overdue:
        head += "\nEXPORT OVERDUE: over-use grace is withdrawn until an export is delivered"
    if status.notice:
        head += f"\nwarning: {status.notice}"
    head += f"\nas of {when(now)}  seats in use {status.seats_in_use}"
    pools = []
    for p in status.pools:
        grace = p.state + (" (enforced)" if p.enforced else "")
        deadline = ""
        if p.deadline is not None:
            deadline = f"{when(p.deadline, '%Y-%m-%d %H:%MZ')} ({_span((p.deadline - now).total_seconds())} left)"
        over = f"+{p.in_use - p.limit}" if p.in_use > p.limit else ""
        pools.append((p.pool, p.in_use, p.limit, over, grace, deadline))
    sites = [(s.site, s.status, s.seats, _counts(s.seats_by_class), _counts(s.local_limits),
              when(s.since, "%m-%d %H:%M"), when(s.last_seen, "%m-%d %H:%M"))
             for s in status.sites]
    parts = [head, table(("pool", "in use", "limit", "over", "grace", "deadline"), pools,
                         right=(1, 2, 3))]
    if status.hours:
        parts.append(hours_table(status.hours, now))
    if sites:
        parts.append(table(("site", "status", "seats", "by class", "local limits", "since",
                            "last seen"), sites, right=(2,)))
    cut_off = status.cut_off_seats
    if cut_off:
        parts.append("held by cut-off sites (still counted until the site reconnects and "
                     "syncs, an operator releases them, or the site is revoked):\n" + "\n".join(
                         f"  {s.site}: {s.seats} seat(s) ({_counts(s.seats_by_class)}), "
                         f"cut off since {when(s.since, '%Y-%m-%d %H:%MZ')}" for s in cut_off))
    return "\n\n".join(parts)


def hours_table(balances: Sequence[Balance], now: datetime) -> str:
    """Agent-hours of the classes licensed by hours, as of ``now`` (ledger time)."""
    rows = []
    for b in balances:
        left = b.left_at(now)
        state = ("exhausted" if left <= 0 else
                 f"{b.notified} % notice sent" if b.notified < 100 else "")
        if left < 0:
            state += f", {-left / US_PER_HOUR:.2f} overdrawn"
        rows.append((b.agent_class, f"{b.used_at(now) / US_PER_HOUR:.2f}",
                     f"{max(left, 0) / US_PER_HOUR:.2f}", f"{b.added_us / US_PER_HOUR:.0f}",
                     b.held, state))
    return table(("hours", "used", "left", "licensed", "seats burning", "state"), rows,
                 right=(1, 2, 3, 4))


# ------------------------------------------------------------------ usage
def usage_table(report: UsageReport) -> str:
    """The usage statement as a readable table, one row per period, key and class.

    By class, over-use is the time above the limit and the seat time above it; by site,
    tenant or campaign, the seat time of seats that were granted as over-use. The classes
    licensed by hours get their agent-hours used and left (class rows, in two more columns,
    and a table over the whole report).
    """
    hourly = report.period == "hour"
    pools = report.by == "class"
    with_hours = pools and any(r.hours is not None for r in report.rows)
    rows = []
    for r in report.rows:
        over = ((f"{r.over_limit_minutes:.0f}", f"{r.excess_agent_hours:.2f}") if pools
                else (f"{r.overuse_agent_hours:.2f}",))
        hours = (() if not with_hours else ("", "") if r.hours is None
                 else (f"{r.hours.used_hours:.2f}", f"{r.hours.left_hours:.2f}"))
        rows.append((
            when(r.period, "%Y-%m-%d %H:00" if hourly else "%Y-%m-%d"), r.key or "-",
            *(() if pools else (r.agent_class,)), f"{r.agent_hours:.2f}", r.peak,
            when(r.peak_at, "%H:%M:%S") if r.peak_at else "",
            *(("" if r.limit is None else r.limit,) if pools else ()), *over,
            r.grants, r.refused or "", *hours,
            ", ".join(f"{k} {v}" for k, v in r.refusals.items())))
    title = (f"usage by {report.by}, {when(report.start, '%Y-%m-%d %H:%M')}Z to "
             f"{when(report.end, '%Y-%m-%d %H:%M')}Z, per {report.period}"
             + (f" (seats held counted up to {when(report.as_of)})" if report.as_of else ""))
    licences = f"\n\n{usage_hours_table(report.hours)}" if report.hours else ""
    if not rows:
        return f"{title}\nno usage recorded in this period{licences}"
    headers: tuple[str, ...]
    right: tuple[int, ...]
    more = ("hours used", "hours left") if with_hours else ()
    if pools:
        headers = ("hour" if hourly else "day", "pool", "agent-h", "peak", "peak at", "limit",
                   "over-limit min", "excess agent-h", "grants", "refused", *more, "by reason")
        right = (2, 3, 5, 6, 7, 8, 9, *((10, 11) if with_hours else ()))
    else:
        headers = ("hour" if hourly else "day", report.by, "class", "agent-h", "peak",
                   "peak at", "over-use seat-h", "grants", "refused", "by reason")
        right = (3, 4, 6, 7, 8)
    return title + "\n" + table(headers, rows, right=right) + licences


def usage_hours_table(hours: Sequence[HoursUsage]) -> str:
    """The classes licensed by hours over a usage statement: granted, used (of which
    charged for offline use) in it, and licensed, left and overdrawn at its end."""
    return "hours licences, this statement (left as of its end)\n" + table(
        ("hours", "licensed", "granted", "used", "charged offline", "left", "overdrawn"),
        [(h.agent_class, f"{h.licensed_hours:.2f}", f"{h.granted_hours:.2f}",
          f"{h.used_hours:.2f}", f"{h.charged_hours:.2f}", f"{max(h.left_hours, 0):.2f}",
          f"{h.overdrawn_hours:.2f}" if h.overdrawn_hours else "") for h in hours],
        right=(1, 2, 3, 4, 5, 6))


def usage_csv(report: UsageReport) -> str:
    """The usage statement as CSV, one column per refusal reason, then the agent-hours of
    a class licensed by hours (:data:`HOURS_COLUMNS`; empty on other rows and when
    reporting by site, tenant or campaign)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["period_start", report.by, "agent_class", "agent_hours", "peak",
                     "peak_at", "limit", "over_limit_minutes", "excess_agent_hours",
                     "overuse_agent_hours", "grants", "overuse_grants", "offline_grants",
                     "refused", *(f"refused_{r}" for r in REFUSAL_REASONS), *HOURS_COLUMNS])
    for r in report.rows:
        h = r.hours
        writer.writerow([
            r.period.isoformat(), r.key, r.agent_class, f"{r.agent_hours:.4f}", r.peak,
            r.peak_at.isoformat() if r.peak_at else "", "" if r.limit is None else r.limit,
            "" if r.over_limit_minutes is None else f"{r.over_limit_minutes:.2f}",
            "" if r.excess_agent_hours is None else f"{r.excess_agent_hours:.4f}",
            f"{r.overuse_agent_hours:.4f}", r.grants, r.overuse_grants, r.offline_grants,
            r.refused, *(r.refusals.get(reason, 0) for reason in REFUSAL_REASONS),
            *(("",) * len(HOURS_COLUMNS) if h is None else (
                f"{h.licensed_hours:.4f}", f"{h.granted_hours:.4f}", f"{h.used_hours:.4f}",
                f"{h.charged_hours:.4f}", f"{h.left_hours:.4f}", f"{h.overdrawn_hours:.4f}"))])
    return out.getvalue()


def usage_json(report: UsageReport) -> str:
    return to_json(report.as_dict())


# ------------------------------------------------------------------ point in time
def render_state_table(state: StateAt) -> str:
    """Seats held at an instant, and each pool then."""
    where = f" at site {state.site}" if state.site else ""
    head = f"as of {when(state.at)}{where}: {len(state.seats)} seat(s) held"
    pools = table(("pool", "in use", "limit", "grace", "deadline"),
                  [(p.pool, p.in_use, "" if p.limit is None else p.limit,
                    p.grace + (" (enforced)" if p.enforced else ""),
                    when(p.deadline, "%Y-%m-%d %H:%MZ")) for p in state.pools], right=(1, 2))
    if not state.seats:
        return f"{head}\n\n{pools}"
    seats = table(("site", "user", "seat", "class", "tenant", "campaign", "since", "flags"),
                  [(s.site, s.user, s.seat, s.agent_class, s.tenant, s.campaign,
                    when(s.granted_at), ",".join(f for f, on in (("overuse", s.overuse),
                                                                 ("offline", s.offline)) if on))
                   for s in state.seats], right=(2,))
    return f"{head}\n\n{pools}\n\n{seats}"


def render_history_table(user: str, entries: Sequence[HistoryEntry]) -> str:
    if not entries:
        return f"nothing recorded for user {user!r}"
    return f"history of user {user}\n" + table(
        ("when", "what", "site", "class", "seat", "tenant", "campaign", "reason", "detail"),
        [(when(e.at), e.kind, e.site, e.agent_class, "" if e.seat is None else e.seat,
          e.tenant, e.campaign, e.reason, e.detail) for e in entries], right=(4,))


def render_why_refused(user: str, answers: Sequence[RefusalAnswer]) -> str:
    if not answers:
        return f"user {user!r} was never refused"
    return "\n".join(f"{when(a.at)}  {a.site}  {a.agent_class}  {a.reason}: {a.explanation}"
                     for a in answers)
