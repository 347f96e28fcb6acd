"""The reseller's dashboard for one month: one self-contained HTML file (inline CSS and SVG,
no script, no network).

An overview across customers (billing figures, open findings, licences expiring soon), the
watchlist, then a section per customer: per pool a chart of seats in use (hourly peak)
against the licensed limit over the month, with the hours over the limit marked along the
top, and a chart of over-use agent-hours per day.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ledger.domain.values import AGENT_CLASSES, COMBINED_POOL
from projections.timestamps import US_PER_HOUR, from_us
from seatledger.vendor.analytics import hour_rows, month_range, parse_month, states, usage_months
from seatledger.vendor.findings import Finding
from seatledger.vendor.registry import IssuedLicence
from seatledger.vendor.reports import (
    CSS,
    PAGE,
    BillingReport,
    CustomerBilling,
    ExpiringLicence,
    billing_report,
    expiring_licences,
    latest_licences,
    open_findings,
)

__all__ = ["LIMIT_COLOUR", "OVER_COLOUR", "OVERUSE_COLOURS", "PEAK_COLOUR", "MonthSeries",
           "month_series", "render_dashboard", "write_dashboard"]

PEAK_COLOUR = "#1f6feb"
LIMIT_COLOUR = "#cf222e"
OVER_COLOUR = "#f0883e"  # the strip along the top of a chart: hours over the limit
OVERUSE_COLOURS = {"PRED": "#8250df", "ACD": "#bf3989", "PBX": "#1a7f37", "VIR": "#9a6700",
                   COMBINED_POOL: "#57606a"}
_POOLS = (*AGENT_CLASSES, COMBINED_POOL)

_W, _H = 1040, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 24, 14, 34
_STRIP = 10


@attrs.frozen
class MonthSeries:
    """One customer's pool over one month, hour by hour up to what is known."""

    pool: str
    peaks: tuple[int, ...]  # highest seats in use in each hour
    limits: tuple[int | None, ...]  # the limit at each hour's end
    excess_us: tuple[int, ...]  # seat time above the limit in each hour


def month_series(conn: Connection, month: str, customer: str) -> dict[str, MonthSeries]:
    """Hourly series per pool for ``customer`` in ``month``. Hours without a stored row
    repeat the last count (nothing happened in them); hours after the customer's last
    record are not known and are left out."""
    index = parse_month(month)
    m0, m1 = month_range(index)
    h0, h1 = m0 // US_PER_HOUR, m1 // US_PER_HOUR
    last = conn.execute(sa.select(states.c.last_us)
                        .where(states.c.customer == customer)).scalar()
    if last is None or last < m0:
        return {}
    known = min(h1, -(-last // US_PER_HOUR)) - h0
    starts = {r.pool: (r.start_count, r.start_limit) for r in conn.execute(
        sa.select(usage_months.c.pool, usage_months.c.start_count, usage_months.c.start_limit)
        .where((usage_months.c.customer == customer) & (usage_months.c.month == month)))}
    rows: dict[str, dict[int, Any]] = defaultdict(dict)
    h = hour_rows.c
    for r in conn.execute(sa.select(hour_rows).where(
            (h.customer == customer) & (h.hour >= h0) & (h.hour < h1))):
        rows[r.pool][r.hour - h0] = r
    series = {}
    for pool in _POOLS:
        if pool not in starts and pool not in rows:
            continue
        count, limit = starts.get(pool, (0, None))
        peaks, limits, excess = [], [], []
        for i in range(known):
            got = rows[pool].get(i)
            if got is not None:
                peaks.append(got.peak)
                excess.append(got.excess_us)
                count, limit = got.end_count, got.limit
            else:
                peaks.append(count)
                excess.append(max(0, count - limit) * US_PER_HOUR if limit is not None else 0)
            limits.append(limit)
        series[pool] = MonthSeries(pool, tuple(peaks), tuple(limits), tuple(excess))
    return series


def write_dashboard(engine: Engine, path: Path, month: str, *, now: datetime,
                    as_of: date | None = None, customer: str | None = None) -> Path:
    """Write the dashboard for ``month`` to ``path`` (through a temporary file)."""
    text = render_dashboard(engine, month, now=now, as_of=as_of, customer=customer)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def render_dashboard(engine: Engine, month: str, *, now: datetime,
                     as_of: date | None = None, customer: str | None = None) -> str:
    """The dashboard as one HTML document (every customer, or one).

    Raises:
        RegistryError: a bad month or an unknown customer.
    """
    as_of = as_of or now.astimezone(UTC).date()
    findings = open_findings(engine)
    with engine.connect() as conn:
        billing = billing_report(conn, month, as_of=as_of, customer=customer)
        latest = latest_licences(conn)
        expiring = expiring_licences(conn, now=now)
        sections = [_customer_section(c, month_series(conn, billing.month, c.customer),
                                      latest.get(c.customer), billing.month)
                    for c in billing.customers]
    body = [
        f"<section><h2>Customers <span>{len(billing.customers)}</span></h2>"
        f"{_overview(billing, latest, findings)}</section>",
        f"<section><h2>Watchlist <span>open findings, worst first</span></h2>"
        f"{_watchlist(findings)}</section>",
        f"<section><h2>Licences expiring within 60 days</h2>{_expiring(expiring)}</section>",
        *sections,
    ]
    legend = (f'<div class="legend"><span><i style="background:{PEAK_COLOUR}"></i>peak seats '
              f'in use (hourly)</span><span><i class="dash" style="border-color:{LIMIT_COLOUR}">'
              f'</i>licensed limit</span><span><i style="background:{OVER_COLOUR}"></i>over the '
              "limit (strip along the top)</span>"
              + "".join(f'<span><i style="background:{c}"></i>{html.escape(p)} over-use '
                        "agent-hours</span>" for p, c in OVERUSE_COLOURS.items())
              + "</div>")
    return PAGE.format(
        title=html.escape(f"Reseller dashboard {billing.month}"), css=CSS,
        sub=f"UTC month {billing.month} · exports expected before {billing.as_of} · "
            f"generated {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC" + legend,
        body="\n".join(body))


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _overview(billing: BillingReport, latest: dict[str, IssuedLicence],
              findings: Sequence[Finding]) -> str:
    if not billing.customers:
        return "<p>No customers yet.</p>"
    open_: dict[str, list[int]] = defaultdict(list)
    for f in findings:
        open_[f.customer].append(int(f.severity))
    rows = []
    for c in billing.customers:
        lic = latest.get(c.customer)
        peaks = ", ".join(f"{p.pool} {p.peak}/{'-' if p.limit is None else p.limit}"
                          for p in c.pools if p.peak or p.limit is not None)
        over = sum(p.overuse_agent_hours for p in c.pools)
        sev = max(open_.get(c.customer, [0]))
        rows.append(
            f"<tr><td><a href=\"#c-{_anchor(c.customer)}\">{_e(c.customer)}</a></td>"
            f"<td>{_e(lic.licence_id if lic else '-')}</td>"
            f"<td>{_e(lic.expires_at[:10] if lic else '-')}</td>"
            f"<td class=n>{c.agent_hours:,.1f}</td><td>{_e(peaks)}</td>"
            f"<td class=n>{c.over_limit_days}</td><td class=n>{over:,.1f}</td>"
            f"<td class=n>{c.refused}</td><td class=n>{c.exports_received}</td>"
            f"<td class=n>{_e('-' if c.exports_missing is None else c.exports_missing)}</td>"
            f"<td class=\"n sev{sev}\">{len(open_.get(c.customer, []))}</td></tr>")
    return ("<table><thead><tr><th>customer</th><th>licence</th><th>expires</th>"
            "<th>agent-h</th><th>peak/limit</th><th>over days</th><th>over-use agent-h</th>"
            "<th>refused</th><th>exports</th><th>missing</th><th>findings</th></tr></thead>"
            "<tbody>" + "".join(rows) + "</tbody></table>")


def _anchor(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name)


def _watchlist(findings: Sequence[Finding]) -> str:
    if not findings:
        return "<p>No open findings.</p>"
    rows = "".join(
        f"<tr><td class=\"sev{int(f.severity)}\">{int(f.severity)}</td><td>{_e(f.customer)}</td>"
        f"<td>{_e(f.kind)}</td><td>{_e(f.day)}</td><td>{_e(f.detail)}</td></tr>"
        for f in findings[:50])
    more = f"<p>and {len(findings) - 50} more</p>" if len(findings) > 50 else ""
    return ("<table><thead><tr><th>severity</th><th>customer</th><th>kind</th><th>day</th>"
            "<th>detail</th></tr></thead><tbody>" + rows + "</tbody></table>" + more)


def _expiring(expiring: Sequence[ExpiringLicence]) -> str:
    if not expiring:
        return "<p>None.</p>"
    return ("<table><thead><tr><th>customer</th><th>licence</th><th>serial</th>"
            "<th>expires</th><th>days left</th></tr></thead><tbody>" + "".join(
                f"<tr><td>{_e(x.customer)}</td><td>{_e(x.licence_id)}</td>"
                f"<td class=n>{x.serial}</td><td>{x.expires_at:%Y-%m-%d %H:%M}</td>"
                f"<td class=n>{x.days_left}</td></tr>" for x in expiring)
            + "</tbody></table>")


def _customer_section(c: CustomerBilling, series: dict[str, MonthSeries],
                      lic: IssuedLicence | None, month: str) -> str:
    m0 = from_us(month_range(parse_month(month))[0])
    hours = (from_us(month_range(parse_month(month))[1]) - m0) // timedelta(hours=1)
    sub = f"licence {_e(lic.licence_id)} · expires {_e(lic.expires_at[:10])}" if lic else ""
    charts = [_concurrency_chart(s, m0, hours) for p, s in series.items()
              if p != COMBINED_POOL or any(v is not None for v in s.limits)]
    overuse = _overuse_chart(series, m0, hours)
    return (f'<section id="c-{_anchor(c.customer)}"><h2>{_e(c.customer)} <span>{sub}</span>'
            "</h2>" + ("".join(charts) if charts else "<p>No seats used this month.</p>")
            + "<h3>Over-use agent-hours per day</h3>" + overuse + "</section>")


def _frame(y_max: float, m0: datetime, hours: int) -> tuple[list[str], Any, Any]:
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def x(hour: float) -> float:
        return _LEFT + plot_w * hour / max(hours, 1)

    def y(v: float) -> float:
        return _TOP + plot_h * (1 - v / y_max)

    parts = [f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" fill="#ffffff"/>']
    for tick in _ticks(y_max):
        parts.append(f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{y(tick):.1f}" '
                     f'y2="{y(tick):.1f}" stroke="#d0d7de"/><text x="{_LEFT - 6}" '
                     f'y="{y(tick) + 4:.1f}" text-anchor="end">{_label(tick)}</text>')
    for day in range(0, hours // 24 + 1, 2 if hours > 24 * 16 else 1):
        t = m0 + timedelta(days=day)
        parts.append(f'<line x1="{x(day * 24):.1f}" x2="{x(day * 24):.1f}" '
                     f'y1="{_TOP + plot_h}" y2="{_TOP + plot_h + 5}" stroke="#57606a"/>'
                     f'<text x="{x(day * 24):.1f}" y="{_TOP + plot_h + 18}" '
                     f'text-anchor="middle">{t:%d}</text>')
    return parts, x, y


def _label(v: float) -> str:
    return f"{v:g}"


def _nice(value: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000):
        if value <= step * 5:
            return float(-(-value // step) * step)
    return float(int(value) + 1)


def _ticks(y_max: float) -> list[float]:
    step = next((c for c in (0.5, 1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000)
                 if y_max / c <= 5), max(1.0, y_max / 5))
    n = int(y_max // step)
    return [step * i for i in range(n + 1)]


def _svg(label: str, parts: list[str]) -> str:
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    parts.append(f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" '
                 'fill="none" stroke="#8c959f"/>')
    return (f'<svg role="img" aria-label="{_e(label)}" viewBox="0 0 {_W} {_H}" width="100%" '
            'xmlns="http://www.w3.org/2000/svg">' + "".join(parts) + "</svg>")


def _concurrency_chart(s: MonthSeries, m0: datetime, hours: int) -> str:
    top = max([*s.peaks, *(v for v in s.limits if v is not None), 1])
    parts, x, y = _frame(_nice(top * 1.15), m0, hours)
    # Hours over the limit: a strip along the top, one run of hours per rectangle.
    run: int | None = None
    for i in range(len(s.peaks) + 1):
        over = i < len(s.peaks) and s.excess_us[i] > 0
        if over and run is None:
            run = i
        elif not over and run is not None:
            parts.append(f'<rect x="{x(run):.1f}" y="{_TOP}" width="{max(x(i) - x(run), 2):.1f}" '
                         f'height="{_STRIP}" fill="{OVER_COLOUR}"><title>over the limit: '
                         f"{m0 + timedelta(hours=run):%d %H:00} to "
                         f"{m0 + timedelta(hours=i):%d %H:00}</title></rect>")
            run = None
    if s.peaks:
        line = [f"M{x(0):.1f},{y(s.peaks[0]):.1f}"]
        for i, v in enumerate(s.peaks):
            line.append(f"L{x(i):.1f},{y(v):.1f}L{x(i + 1):.1f},{y(v):.1f}")
        parts.append(f'<path d="{"".join(line)}" fill="none" stroke="{PEAK_COLOUR}" '
                     'stroke-width="2.5" shape-rendering="crispEdges"><title>peak seats in '
                     "use per hour</title></path>")
    steps = []
    for i, lim in enumerate(s.limits):
        if lim is not None:
            move = "M" if i == 0 or s.limits[i - 1] is None else "L"
            steps.append(f"{move}{x(i):.1f},{y(lim):.1f}L{x(i + 1):.1f},{y(lim):.1f}")
    if steps:
        parts.append(f'<path d="{"".join(steps)}" fill="none" stroke="{LIMIT_COLOUR}" '
                     'stroke-width="2" stroke-dasharray="8 5" shape-rendering="crispEdges">'
                     "<title>licensed limit</title></path>")
    peak = max(s.peaks, default=0)
    limit = next((v for v in reversed(s.limits) if v is not None), None)
    caption = f"peak {peak}" + ("" if limit is None else f" · limit {limit}")
    return (f"<h3>{_e(s.pool)} <span>{caption}</span></h3>"
            + _svg(f"{s.pool} seats in use against the limit", parts))


def _overuse_chart(series: dict[str, MonthSeries], m0: datetime, hours: int) -> str:
    days = -(-hours // 24)
    per_day: dict[str, list[float]] = {}
    for pool, s in series.items():
        values = [0.0] * days
        for i, v in enumerate(s.excess_us):
            values[i // 24] += v / US_PER_HOUR
        if any(values):
            per_day[pool] = values
    if not per_day:
        return "<p>No over-use this month.</p>"
    top = max(sum(v[d] for v in per_day.values()) for d in range(days))
    parts, x, y = _frame(_nice(top * 1.15), m0, hours)
    width = (x(24) - x(0)) * 0.7
    for d in range(days):
        base = 0.0
        for pool, values in per_day.items():
            amount = values[d]
            if amount:
                y0, y1 = y(base), y(base + amount)
                parts.append(
                    f'<rect x="{x(d * 24) + (x(24) - x(0) - width) / 2:.1f}" y="{y1:.1f}" '
                    f'width="{width:.1f}" height="{max(y0 - y1, 1):.1f}" '
                    f'fill="{OVERUSE_COLOURS.get(pool, "#57606a")}"><title>'
                    f"{_e(pool)} {m0 + timedelta(days=d):%Y-%m-%d}: {amount:,.2f} over-use "
                    "agent-hours</title></rect>")
                base += amount
    return _svg("over-use agent-hours per day", parts)
