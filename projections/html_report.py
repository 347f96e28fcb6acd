"""The usage report as one self-contained HTML file: inline CSS and SVG, no script, no
network. Per pool, a chart of concurrency (hourly peak and hourly average) against the
licensed limit, with the over-use, grace and enforcement windows shaded; then the daily
statement by pool, the agent-hours of the classes licensed by hours, and the statement by
site.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from ledger.domain.values import AGENT_CLASSES, COMBINED_POOL

from .live_status import read_status
from .point_in_time import pool_windows, pools_at
from .schema import pit_pool_events
from .timestamps import US_PER_HOUR, from_us, to_us
from .usage import HoursUsage, UsageReport, UsageRow, usage_report

PEAK_COLOUR = "#1f6feb"
AVERAGE_COLOUR = "#9ec5fe"
LIMIT_COLOUR = "#cf222e"
WINDOW_COLOURS = {"grace": "#fff1c2", "overuse": "#f0883e", "enforced": "#f4c7cb"}
WINDOW_TITLES = {"grace": "grace window open", "overuse": "over the limit",
                 "enforced": "limit enforced (grace spent)"}

_W, _H = 1040, 280
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 36, 16, 40
_STRIP = 12  # height of the over-use strip along the top of a chart
_MAX_COLUMNS = 2000  # hour columns drawn at most; about two per pixel of the plot


def write_html_report(source: Any, path: Path, start: datetime, end: datetime, *,
                      as_of: datetime | None = None, title: str | None = None) -> Path:
    """Write the report for [start, end) to ``path``. ``source`` is a ProjectionRunner or
    an SQLAlchemy Connection to the views."""
    if isinstance(source, Connection):
        text = render_html_report(source, start, end, as_of=as_of, title=title)
    else:
        with source.connect() as conn:
            text = render_html_report(conn, start, end, as_of=as_of, title=title)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def render_html_report(conn: Connection, start: datetime, end: datetime, *,
                       as_of: datetime | None = None, title: str | None = None) -> str:
    """The report for [start, end) (whole hours) as one HTML document."""
    hourly = usage_report(conn, start, end, by="class", period="hour", as_of=as_of)
    daily = usage_report(conn, start, end, by="class", period="day", as_of=as_of)
    by_site = usage_report(conn, start, end, by="site", period="day", as_of=as_of)
    t0, t1 = hourly.start, hourly.end
    status = read_status(conn)
    windows = pool_windows(conn, t0, t1)
    limits = _limit_steps(conn, t0, t1)
    pools = [p for p in (*AGENT_CLASSES, COMBINED_POOL)
             if p in limits or any(r.key == p and r.peak for r in hourly.rows)]
    if COMBINED_POOL in pools and COMBINED_POOL not in limits and not any(
            r.peak for r in hourly.rows if r.key in ("PRED", "ACD")):
        pools.remove(COMBINED_POOL)
    heading = title or (f"Seat usage — {status.customer}" if status else "Seat usage")
    sub = f"{_d(t0)} to {_d(t1)} (UTC)"
    if status is not None:
        sub += f" · licence {html.escape(status.licence_id)}"
    charts = "\n".join(
        _chart(p, [r for r in hourly.rows if r.key == p], limits.get(p, []),
               windows.get(p, []), t0, t1, hourly.as_of) for p in pools)
    return _PAGE.format(
        title=html.escape(heading), sub=sub, generated=_d(hourly.as_of or t1),
        legend=_legend(), charts=charts or "<p>No seats were used in this period.</p>",
        summary=_summary(daily), hours=_hours_section(daily), sites=_site_table(by_site),
        windows=_windows_list(windows), css=_CSS)


def _d(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _limit_steps(conn: Connection, t0: datetime, t1: datetime) -> dict[str, list[tuple[datetime, int]]]:
    """Per pool, (from, limit) steps over [t0, t1)."""
    steps: dict[str, list[tuple[datetime, int]]] = {}
    for p in pools_at(conn, to_us(t0)):
        if p.limit is not None:
            steps[p.pool] = [(t0, p.limit)]
    rows = conn.execute(
        select(pit_pool_events.c.pool, pit_pool_events.c.at_us, pit_pool_events.c.limit)
        .where((pit_pool_events.c.kind == "limit") & (pit_pool_events.c.at_us > to_us(t0))
               & (pit_pool_events.c.at_us < to_us(t1)))
        .order_by(pit_pool_events.c.id))
    for pool, at, limit in rows:
        steps.setdefault(pool, []).append((from_us(at), limit))
    return steps


def _chart(pool: str, rows: Sequence[UsageRow], limit_steps: Sequence[tuple[datetime, int]],
           windows: Sequence[dict[str, Any]], t0: datetime, t1: datetime,
           as_of: datetime | None) -> str:
    span = (t1 - t0).total_seconds() or 1.0
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    hours = int(span // 3600)
    # Hours after the last recorded event are not known yet: they are left blank.
    known = hours if as_of is None else max(0, min(hours, -(-int((as_of - t0).total_seconds()) // 3600)))
    peaks = [0] * hours
    average = [0.0] * hours
    first_hour = to_us(t0) // US_PER_HOUR
    for r in rows:
        i = to_us(r.period) // US_PER_HOUR - first_hour
        if 0 <= i < hours:
            peaks[i] = r.peak
            average[i] = r.agent_hours
    # A long period is drawn in columns of several hours (the highest peak and the mean of
    # the averages in each), so that the chart stays a few hundred kilobytes.
    per = max(1, -(-hours // _MAX_COLUMNS))
    if per > 1:
        cuts = [(i, min(i + per, known)) for i in range(0, known, per)]
        peaks = [max(peaks[a:b]) for a, b in cuts]
        average = [sum(average[a:b]) / (b - a) for a, b in cuts]
    known_columns = -(-known // per)
    top = max([*peaks, *(limit for _, limit in limit_steps), 1])
    y_max = _nice(top * 1.15)

    def x(t: datetime) -> float:
        return _LEFT + plot_w * (t - t0).total_seconds() / span

    def xi(i: int) -> float:
        return _LEFT + plot_w * min(i * per, hours) / max(hours, 1)

    def y(v: float) -> float:
        return _TOP + plot_h * (1 - v / y_max)

    parts = [f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" fill="#ffffff"/>']
    for kind in ("grace", "enforced", "overuse"):
        for w in windows:
            if w["kind"] == kind:
                x0, x1 = x(w["start"]), x(w["end"])
                # Grace and enforcement are periods of the pool: full-height bands. Over-use
                # is drawn as a strip along the top so that it never hides the grace band.
                height = _STRIP if kind == "overuse" else plot_h
                parts.append(
                    f'<rect x="{x0:.1f}" y="{_TOP}" width="{max(x1 - x0, 1):.1f}" '
                    f'height="{height}" fill="{WINDOW_COLOURS[kind]}">'
                    f'<title>{WINDOW_TITLES[kind]}: {_d(w["start"])} to {_d(w["end"])}</title>'
                    "</rect>")
    for tick in _y_ticks(y_max):
        parts.append(f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{y(tick):.1f}" '
                     f'y2="{y(tick):.1f}" stroke="#d0d7de" stroke-width="1"/>'
                     f'<text x="{_LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick}</text>')
    for when, label in _x_ticks(t0, t1):
        parts.append(f'<line x1="{x(when):.1f}" x2="{x(when):.1f}" y1="{_TOP + plot_h}" '
                     f'y2="{_TOP + plot_h + 5}" stroke="#57606a"/>'
                     f'<text x="{x(when):.1f}" y="{_TOP + plot_h + 20}" '
                     f'text-anchor="middle">{label}</text>')
    if known_columns:
        unit = "hour" if per == 1 else f"{per} hours"
        area = [f"M{xi(0):.1f},{y(0):.1f}"]
        for i, v in enumerate(average[:known_columns]):
            area.append(f"L{xi(i):.1f},{y(v):.1f}L{xi(i + 1):.1f},{y(v):.1f}")
        area.append(f"L{xi(known_columns):.1f},{y(0):.1f}Z")
        parts.append(f'<path d="{"".join(area)}" fill="{AVERAGE_COLOUR}" fill-opacity="0.55" '
                     f'stroke="none"><title>average seats in use per {unit}</title></path>')
        line = [f"M{xi(0):.1f},{y(peaks[0]):.1f}"]
        for i, v in enumerate(peaks[:known_columns]):
            line.append(f"L{xi(i):.1f},{y(v):.1f}L{xi(i + 1):.1f},{y(v):.1f}")
        parts.append(f'<path d="{"".join(line)}" fill="none" stroke="{PEAK_COLOUR}" '
                     'stroke-width="2.5" shape-rendering="crispEdges">'
                     f'<title>peak seats in use per {unit}</title></path>')
    if limit_steps:
        pts = []
        for i, (since, limit) in enumerate(limit_steps):
            until = limit_steps[i + 1][0] if i + 1 < len(limit_steps) else t1
            pts.append(f"{'M' if i == 0 else 'L'}{x(since):.1f},{y(limit):.1f}"
                       f"L{x(until):.1f},{y(limit):.1f}")
        parts.append(f'<path d="{"".join(pts)}" fill="none" stroke="{LIMIT_COLOUR}" '
                     'stroke-width="2" stroke-dasharray="8 5" shape-rendering="crispEdges">'
                     '<title>licensed limit</title></path>')
    parts.append(f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" '
                 'fill="none" stroke="#8c959f"/>')
    peak = max(rows, key=lambda r: (r.peak, -(to_us(r.peak_at) if r.peak_at else 0)),
               default=None)
    caption = (f"peak {peak.peak} at {_d(peak.peak_at)}" if peak and peak.peak_at
               else "no seats in use")
    if limit_steps:
        caption += f" · limit {limit_steps[-1][1]}"
    return (f'<section class="chart"><h2>{html.escape(pool)} <span>{caption}</span></h2>'
            f'<svg role="img" aria-label="{html.escape(pool)} seats in use against the limit" '
            f'viewBox="0 0 {_W} {_H}" width="100%" xmlns="http://www.w3.org/2000/svg">'
            + "".join(parts) + "</svg></section>")


def _nice(value: float) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000):
        if value <= step * 5:
            return int(-(-value // step) * step)
    return int(value) + 1


def _y_ticks(y_max: int) -> list[int]:
    step = next((c for c in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000)
                 if y_max / c <= 6), max(1, y_max // 5))
    return list(range(0, y_max + 1, step))


# Tick spacing in hours: up to a month, then roughly quarters, half-years and years.
_X_TICK_HOURS = (1, 2, 3, 6, 12, 24, 48, 96, 168, 336, 720, 2160, 4380, 8760, 2 * 8760,
                 5 * 8760, 10 * 8760, 20 * 8760, 50 * 8760, 100 * 8760)
_X_TICKS_MAX = 14


def _x_ticks(t0: datetime, t1: datetime) -> list[tuple[datetime, str]]:
    hours = (t1 - t0).total_seconds() / 3600
    every = next((h for h in _X_TICK_HOURS if hours / h <= _X_TICKS_MAX),
                 -(-int(hours) // _X_TICKS_MAX))
    # Each tick is counted from t0, never stepped past t1: a step beyond the last tick could
    # leave datetime's range (year 9999) for a long period.
    ticks = []
    for i in range(int(hours // every) + 1):
        t = t0 + timedelta(hours=every * i)
        if every > 720:
            label = t.strftime("%b %Y")
        elif every >= 24 or t.hour == 0:
            label = t.strftime("%d %b")
        else:
            label = t.strftime("%H:%M")
        ticks.append((t, label))
    return ticks


def _legend() -> str:
    items = [
        f'<span><i style="background:{PEAK_COLOUR}"></i>peak seats in use (hourly)</span>',
        f'<span><i style="background:{AVERAGE_COLOUR}"></i>average seats in use (hourly)</span>',
        f'<span><i class="dash" style="border-color:{LIMIT_COLOUR}"></i>licensed limit</span>',
    ] + [f'<span><i style="background:{WINDOW_COLOURS[k]}"></i>{WINDOW_TITLES[k]}'
         + (" (strip along the top)" if k == "overuse" else "") + "</span>"
         for k in ("grace", "overuse", "enforced")]
    return "".join(items)


def _summary(report: UsageReport) -> str:
    rows = []
    for r in report.rows:
        refused = ", ".join(f"{k} {v}" for k, v in r.refusals.items())
        rows.append(
            f"<tr><td>{r.period:%Y-%m-%d}</td><td>{html.escape(r.key)}</td>"
            f"<td class=n>{r.agent_hours:,.1f}</td><td class=n>{r.peak}</td>"
            f"<td>{r.peak_at.strftime('%H:%M') if r.peak_at else ''}</td>"
            f"<td class=n>{'' if r.limit is None else r.limit}</td>"
            f"<td class=n>{(r.over_limit_minutes or 0):,.0f}</td>"
            f"<td class=n>{(r.excess_agent_hours or 0):,.1f}</td><td class=n>{r.grants}</td>"
            f"<td class=n>{r.refused or ''}</td><td>{html.escape(refused)}</td></tr>")
    if not rows:
        return "<p>No usage recorded.</p>"
    return ("<table><thead><tr><th>day</th><th>pool</th><th>agent-hours</th><th>peak</th>"
            "<th>peak at</th><th>limit</th><th>over-limit min</th><th>excess agent-h</th>"
            "<th>grants</th><th>refused</th><th>reasons</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _hours_section(report: UsageReport) -> str:
    """The classes licensed by hours: over the report, then per day (none: no section)."""
    if not report.hours:
        return ""
    total = "".join(
        f"<tr><td>{html.escape(h.agent_class)}</td>{_hours_cells(h)}</tr>" for h in report.hours)
    days = "".join(
        f"<tr><td>{r.period:%Y-%m-%d}</td><td>{html.escape(r.key)}</td>{_hours_cells(r.hours)}</tr>"
        for r in report.rows if r.hours is not None)
    head = ("<th>licensed</th><th>granted</th><th>used</th><th>charged offline</th>"
            "<th>left</th><th>overdrawn</th>")
    return ("<section><h2>Agent-hours <span>hours licences: granted, used and charged in the "
            "period; licensed, left and overdrawn at its end</span></h2>"
            f"<table class=hours><thead><tr><th>class</th>{head}</tr></thead><tbody>{total}"
            "</tbody></table><h3>By day</h3>"
            f"<table class=hours-days><thead><tr><th>day</th><th>class</th>{head}</tr></thead>"
            f"<tbody>{days}</tbody></table></section>")


def _hours_cells(h: HoursUsage) -> str:
    return "".join(f"<td class=n>{v:,.2f}</td>" for v in (
        h.licensed_hours, h.granted_hours, h.used_hours, h.charged_hours,
        max(h.left_hours, 0.0), h.overdrawn_hours))


def _site_table(report: UsageReport) -> str:
    rows = "".join(
        f"<tr><td>{r.period:%Y-%m-%d}</td><td>{html.escape(r.key)}</td>"
        f"<td>{html.escape(r.agent_class)}</td><td class=n>{r.agent_hours:,.1f}</td>"
        f"<td class=n>{r.peak}</td><td>{r.peak_at.strftime('%H:%M') if r.peak_at else ''}</td>"
        f"<td class=n>{r.overuse_agent_hours:,.1f}</td><td class=n>{r.grants}</td>"
        f"<td class=n>{r.refused or ''}</td></tr>" for r in report.rows)
    if not rows:
        return "<p>No usage recorded.</p>"
    return ("<table><thead><tr><th>day</th><th>site</th><th>class</th><th>agent-hours</th>"
            "<th>peak</th><th>peak at</th><th>over-use seat-h</th><th>grants</th>"
            "<th>refused</th></tr></thead><tbody>" + rows + "</tbody></table>")


def _windows_list(windows: dict[str, list[dict[str, Any]]]) -> str:
    items = [f"<li><b>{html.escape(pool)}</b> {WINDOW_TITLES[w['kind']]}: "
             f"{_d(w['start'])} to {_d(w['end'])}</li>"
             for pool, ws in sorted(windows.items()) for w in ws]
    return "<ul>" + "".join(items) + "</ul>" if items else "<p>None in this period.</p>"


_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 color:#1f2328;background:#f6f8fa;margin:0}
main{max-width:1100px;margin:0 auto;padding:24px}
header{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px 20px;margin-bottom:16px}
h1{font-size:22px;margin:0 0 4px}
.sub{color:#57606a}
.legend{display:flex;flex-wrap:wrap;gap:14px;margin-top:10px;font-size:13px;color:#57606a}
.legend i{display:inline-block;width:18px;height:10px;margin-right:6px;vertical-align:middle;border-radius:2px}
.legend i.dash{height:0;border-top:2px dashed;border-radius:0}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:12px 16px;margin-bottom:16px}
h2{font-size:17px;margin:4px 0 8px}
h2 span{font-weight:normal;color:#57606a;font-size:14px;margin-left:8px}
h3{font-size:15px;margin:12px 0 6px}
svg text{font-size:12px;fill:#57606a}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:4px 8px;border-bottom:1px solid #eaeef2;text-align:left}
th{background:#f6f8fa;position:sticky;top:0}
td.n{text-align:right;font-variant-numeric:tabular-nums}
footer{color:#57606a;font-size:12px;margin-top:8px}
@media print{body{background:#fff}section,header{break-inside:avoid}}
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<main>
<header>
<h1>{title}</h1>
<div class="sub">{sub}</div>
<div class="legend">{legend}</div>
</header>
{charts}
<section><h2>Daily statement by pool</h2>{summary}</section>
{hours}
<section><h2>Over-use, grace and enforcement windows</h2>{windows}</section>
<section><h2>Daily statement by site</h2>{sites}</section>
<footer>Generated by seatledger from the audit ledger's read models; seats still held are
counted up to {generated} UTC. Times are UTC.</footer>
</main>
</body>
</html>
"""
