"""Reports from the reseller analytics: billing per customer and month, the customers'
overview, licences expiring soon. Read-only over the analytics tables and the registry;
the caller brings the analytics up to date first (:class:`AnalyticsRunner`).

Billing is a handful of set-based queries, each on one month's index (never a per-customer
replay), so a month of thousands of customers is read in a fraction of a second.

A chained master's seats are billed once, at that (downstream) master: its upstream's bill
shows them as ``chained_agent_hours`` instead (:mod:`seatledger.vendor.chaining`).
"""

from __future__ import annotations

import csv
import html
import io
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ledger.domain.values import AGENT_CLASSES, COMBINED_MEMBERS, COMBINED_POOL
from projections.render import table, to_json
from projections.timestamps import US_PER_HOUR, maybe_from_us
from seatledger.vendor.analytics import (
    customer_months,
    export_days,
    month_label,
    month_range,
    parse_month,
    refusals,
    states,
    usage_months,
)
from seatledger.vendor.chaining import ChainedSite, Chaining, month_chaining
from seatledger.vendor.findings import Finding, Findings
from seatledger.vendor.registry import IssuedLicence, RegistryError, customers, licences

__all__ = ["BILLING_FORMATS", "EXPIRY_WINDOW_DAYS", "BillingReport", "ChainedSite",
           "CustomerBilling", "CustomerOverview", "ExpiringLicence", "PoolBilling", "billing_csv", "billing_html",
           "billing_json", "billing_report", "billing_table", "customers_overview",
           "expiring_licences", "latest_licences", "open_findings", "parse_month"]

BILLING_FORMATS: tuple[str, ...] = ("table", "csv", "json", "html")
EXPIRY_WINDOW_DAYS = 60
_US_PER_MINUTE = 60_000_000
_POOL_ORDER = {p: i for i, p in enumerate((*AGENT_CLASSES, COMBINED_POOL))}


# ------------------------------------------------------------------ billing
@attrs.frozen
class PoolBilling:
    """One pool's month: an agent class, or PRED+ACD when the licence caps the two.

    ``agent_hours`` is billed here; ``chained_agent_hours``, seat time of chained masters'
    sites, is billed at those masters: the two add up to the pool's seat time. Peaks and
    over-use count both (they are this master's concurrency); ``chained_overuse_agent_hours``
    is the chained sites' share of the over-use."""

    pool: str
    agent_hours: float
    peak: int
    peak_at: datetime | None
    limit: int | None  # at the end of the month (so far)
    over_limit_days: int
    over_limit_minutes: float
    overuse_agent_hours: float  # seat time above the limit
    grants: int
    overuse_grants: int
    offline_grants: int
    refusals: Mapping[str, int]
    chained_agent_hours: float = 0.0
    chained_overuse_agent_hours: float = 0.0


@attrs.frozen
class CustomerBilling:
    """One customer's month. ``over_limit_*`` count the time any pool was over its limit;
    ``agent_hours`` adds the agent classes (PRED+ACD would count its seats twice), as
    ``chained_agent_hours`` does. ``chained_sites``: this customer's sites that chained
    masters' exports name, billed there; ``chained_under``: ``upstream:site`` of the
    upstream masters this one is chained under (its seats are billed here)."""

    customer: str
    month: str
    agent_hours: float
    over_limit_days: int
    over_limit_minutes: float
    refusals: Mapping[str, int]
    exports_received: int
    exports_missing: int | None  # None: no export ever received
    pools: tuple[PoolBilling, ...]
    chained_agent_hours: float = 0.0
    chained_sites: tuple[ChainedSite, ...] = ()
    chained_under: tuple[str, ...] = ()

    @property
    def refused(self) -> int:
        return sum(self.refusals.values())


@attrs.frozen
class BillingReport:
    month: str
    as_of: date  # exports are expected for the days before this one
    customers: tuple[CustomerBilling, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"month": self.month, "as_of": self.as_of.isoformat(),
                "customers": [dict(attrs.asdict(c), refused=c.refused)
                              for c in self.customers]}


def _expected_days(month: int, first_day: str | None, as_of: date) -> int | None:
    """Days of ``month`` an export was due for: from the first export on, before ``as_of``."""
    if first_day is None:
        return None
    m0, m1 = month_range(month)
    start = max(_date_of(m0), date.fromisoformat(first_day))
    end = min(_date_of(m1), as_of)  # exclusive
    return max(0, (end - start).days)


def _date_of(us: int) -> date:
    return date(1970, 1, 1) + timedelta(microseconds=us)


def known_customers(conn: Connection) -> list[str]:
    """Customers in the registry or in the analytics, sorted."""
    names = {r[0] for r in conn.execute(sa.select(customers.c.name))}
    names |= {r[0] for r in conn.execute(sa.select(states.c.customer))}
    return sorted(names)


def billing_report(source: Engine | Connection, month: str, *, as_of: date,
                   customer: str | None = None) -> BillingReport:
    """Billing for ``month`` (``YYYY-MM``, UTC), every known customer or one.

    Raises:
        RegistryError: a bad month, or a customer neither registered nor imported.
    """
    if isinstance(source, Engine):
        with source.connect() as conn:
            return billing_report(conn, month, as_of=as_of, customer=customer)
    conn = source
    try:
        index = parse_month(month)
    except ValueError as e:
        raise RegistryError(str(e)) from None
    label = month_label(index)
    names = known_customers(conn)
    if customer is not None:
        if customer not in names:
            raise RegistryError(f"unknown customer {customer!r}: neither registered nor "
                                "imported")
        names = [customer]

    def only(t: sa.Table) -> Any:
        cond = t.c.month == label
        return cond if customer is None else cond & (t.c.customer == customer)

    pools: dict[str, list[Any]] = defaultdict(list)
    for r in conn.execute(sa.select(usage_months).where(only(usage_months))):
        pools[r.customer].append(r)
    refused: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for c, cls, reason, n in conn.execute(
            sa.select(refusals.c.customer, refusals.c.agent_class, refusals.c.reason,
                      refusals.c["count"]).where(only(refusals))):
        refused[c][cls][reason] = n
    overall = {r.customer: r for r in conn.execute(
        sa.select(customer_months).where(only(customer_months)))}
    d0, d1 = (_date_of(u).isoformat() for u in month_range(index))
    days_q = (sa.select(export_days.c.customer, sa.func.count())
              .where((export_days.c.day >= d0) & (export_days.c.day < d1)))
    if customer is not None:
        days_q = days_q.where(export_days.c.customer == customer)
    received: dict[str, int] = dict(conn.execute(days_q.group_by(export_days.c.customer)).all())
    first_q = sa.select(states.c.customer, states.c.first_day)
    if customer is not None:
        first_q = first_q.where(states.c.customer == customer)
    first: dict[str, str | None] = dict(conn.execute(first_q).all())
    chain = month_chaining(conn, index)

    result = []
    for name in names:
        rows = sorted(pools.get(name, ()), key=lambda r: _POOL_ORDER.get(r.pool, 99))
        by_class = refused.get(name, {})
        # PRED+ACD only when the licence caps it: otherwise it repeats PRED and ACD.
        pool_rows = tuple(_pool(r, by_class.get(r.pool, {}), chained=_chained(chain, name,
                                                                             r.pool))
                          for r in rows if r.pool != COMBINED_POOL or r.limit is not None
                          or r.start_limit is not None)
        totals: dict[str, int] = defaultdict(int)
        for reasons in by_class.values():
            for reason, n in reasons.items():
                totals[reason] += n
        # Refusals of a class without a usage row (one never licensed) are listed too.
        shown = {p.pool for p in pool_rows}
        extra = tuple(_pool(None, reasons, cls) for cls, reasons in sorted(by_class.items())
                      if cls not in shown)
        o = overall.get(name)
        got = received.get(name, 0)
        expected = _expected_days(index, first.get(name), as_of)
        chained = sum(chain.taken_us.get((name, r.pool), 0) for r in rows
                      if r.pool != COMBINED_POOL)
        result.append(CustomerBilling(
            customer=name, month=label,
            agent_hours=(sum(r.agent_us for r in rows if r.pool != COMBINED_POOL)
                         - chained) / US_PER_HOUR,
            over_limit_days=o.over_days if o is not None else 0,
            over_limit_minutes=(o.over_limit_us if o is not None else 0) / _US_PER_MINUTE,
            refusals=dict(sorted(totals.items())), exports_received=got,
            exports_missing=None if expected is None else max(0, expected - got),
            pools=pool_rows + extra, chained_agent_hours=chained / US_PER_HOUR,
            chained_sites=chain.sites.get(name, ()),
            chained_under=chain.upstreams.get(name, ())))
    return BillingReport(label, as_of, tuple(result))


def _chained(chain: Chaining, customer: str, pool: str) -> tuple[int, int]:
    """Seat time of a pool's chained sites taken off the bill, and their over-use share."""
    members = (COMBINED_MEMBERS if pool == COMBINED_POOL else (pool,))
    return (sum(chain.taken_us.get((customer, c), 0) for c in members),
            sum(chain.overuse_us.get((customer, c), 0) for c in members))


def _pool(r: Any, reasons: Mapping[str, int], pool: str | None = None, *,
          chained: tuple[int, int] = (0, 0)) -> PoolBilling:
    if r is None:
        return PoolBilling(str(pool), 0.0, 0, None, None, 0, 0.0, 0.0, 0, 0, 0,
                           dict(sorted(reasons.items())))
    taken, overuse = chained
    return PoolBilling(
        pool=r.pool, agent_hours=(r.agent_us - taken) / US_PER_HOUR, peak=r.peak,
        peak_at=maybe_from_us(r.peak_us), limit=r.limit, over_limit_days=r.over_days,
        over_limit_minutes=r.over_limit_us / _US_PER_MINUTE,
        overuse_agent_hours=r.excess_us / US_PER_HOUR, grants=r.grants,
        overuse_grants=r.overuse_grants, offline_grants=r.offline_grants,
        refusals=dict(sorted(reasons.items())), chained_agent_hours=taken / US_PER_HOUR,
        chained_overuse_agent_hours=overuse / US_PER_HOUR)


def _reasons(reasons: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in reasons.items())


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M")


def _chained_sites(c: CustomerBilling) -> str:
    """``site=downstream`` per chained site (``+`` between several downstreams)."""
    return ",".join(f"{s.site}={'+'.join(s.billed_at)}" for s in c.chained_sites)


def _chain_note(c: CustomerBilling) -> str:
    """What the table says of a customer's chaining: its chained sites, its upstreams."""
    under = ",".join(c.chained_under)
    return " ".join(part for part in (_chained_sites(c), under and f"under {under}") if part)


_HEADERS = ("customer", "pool", "agent-h", "peak", "peak at", "limit", "over days",
            "over min", "over-use agent-h", "grants", "refused", "exports", "missing",
            "chained agent-h", "chained")
_NUMERIC = (2, 3, 5, 6, 7, 8, 9, 11, 12, 13)


def _flat(report: BillingReport) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for c in report.customers:
        missing = "" if c.exports_missing is None else c.exports_missing
        rows.append([c.customer, "all", f"{c.agent_hours:.2f}", "", "", "",
                     c.over_limit_days, f"{c.over_limit_minutes:.0f}", "", "",
                     _reasons(c.refusals), c.exports_received, missing,
                     f"{c.chained_agent_hours:.2f}", _chain_note(c)])
        for p in c.pools:
            rows.append(["", p.pool, f"{p.agent_hours:.2f}", p.peak, _when(p.peak_at),
                         "" if p.limit is None else p.limit, p.over_limit_days,
                         f"{p.over_limit_minutes:.0f}", f"{p.overuse_agent_hours:.2f}",
                         p.grants, _reasons(p.refusals), "", "",
                         f"{p.chained_agent_hours:.2f}", ""])
    return rows


def billing_table(report: BillingReport) -> str:
    if not report.customers:
        return f"billing {report.month}: no customers yet"
    return (f"billing {report.month} (UTC); exports expected before {report.as_of}\n"
            + table(_HEADERS, _flat(report), right=_NUMERIC))


def billing_csv(report: BillingReport) -> str:
    """One line per customer and pool (pool ``all``: the customer's month). The chained
    columns come last: ``chained_sites`` is ``site=downstream,...``, ``chained_under``
    ``upstream:site,...`` (on the ``all`` lines)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["month", "customer", "pool", "agent_hours", "peak", "peak_at", "limit",
                "over_limit_days", "over_limit_minutes", "overuse_agent_hours", "grants",
                "overuse_grants", "offline_grants", "refusals", "exports_received",
                "exports_missing", "chained_agent_hours", "chained_overuse_agent_hours",
                "chained_sites", "chained_under"])
    for c in report.customers:
        w.writerow([report.month, c.customer, "all", f"{c.agent_hours:.4f}", "", "", "",
                    c.over_limit_days, f"{c.over_limit_minutes:.2f}", "", "", "", "",
                    _reasons(c.refusals), c.exports_received,
                    "" if c.exports_missing is None else c.exports_missing,
                    f"{c.chained_agent_hours:.4f}",
                    f"{sum(s.overuse_agent_hours for s in c.chained_sites):.4f}",
                    _chained_sites(c), ",".join(c.chained_under)])
        for p in c.pools:
            w.writerow([report.month, c.customer, p.pool, f"{p.agent_hours:.4f}", p.peak,
                        "" if p.peak_at is None else p.peak_at.isoformat(),
                        "" if p.limit is None else p.limit, p.over_limit_days,
                        f"{p.over_limit_minutes:.2f}", f"{p.overuse_agent_hours:.4f}",
                        p.grants, p.overuse_grants, p.offline_grants, _reasons(p.refusals),
                        "", "", f"{p.chained_agent_hours:.4f}",
                        f"{p.chained_overuse_agent_hours:.4f}", "", ""])
    return out.getvalue()


def billing_json(report: BillingReport) -> str:
    return to_json(report.as_dict())


def billing_html(report: BillingReport, *, title: str | None = None) -> str:
    """The billing statement as one HTML page (inline CSS, no script, no network)."""
    body = [f"<tr class=c><td>{html.escape(r[0])}</td>" + "".join(
        f"<td{' class=n' if i in _NUMERIC else ''}>"
        f"{html.escape(str(v))}</td>" for i, v in enumerate(r[1:], start=1)) + "</tr>"
        for r in _flat(report)]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _HEADERS)
    heading = title or f"Billing {report.month}"
    tbl = (f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
           if body else "<p>No customers yet.</p>")
    return PAGE.format(title=html.escape(heading), css=CSS,
                       sub=f"UTC month {report.month}; exports expected for the days "
                           f"before {report.as_of}",
                       body=f"<section>{tbl}</section>")


CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 color:#1f2328;background:#f6f8fa;margin:0}
main{max-width:1100px;margin:0 auto;padding:24px}
header{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px 20px;margin-bottom:16px}
h1{font-size:22px;margin:0 0 4px}
.sub{color:#57606a}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:12px 16px;margin-bottom:16px}
h2{font-size:17px;margin:4px 0 8px}
h2 span{font-weight:normal;color:#57606a;font-size:14px;margin-left:8px}
h3{font-size:14px;margin:10px 0 4px;color:#57606a}
svg text{font-size:12px;fill:#57606a}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:4px 8px;border-bottom:1px solid #eaeef2;text-align:left}
th{background:#f6f8fa}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.c td{border-top:1px solid #d0d7de}
.legend{display:flex;flex-wrap:wrap;gap:14px;margin-top:10px;font-size:13px;color:#57606a}
.legend i{display:inline-block;width:18px;height:10px;margin-right:6px;vertical-align:middle;border-radius:2px}
.legend i.dash{height:0;border-top:2px dashed;border-radius:0}
.sev4{color:#cf222e;font-weight:bold}.sev3{color:#bc4c00}
footer{color:#57606a;font-size:12px;margin-top:8px}
@media print{body{background:#fff}section,header{break-inside:avoid}}
"""

PAGE = """<!DOCTYPE html>
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
</header>
{body}
<footer>Generated by seatledger from the vendor's store of customers' audit exports.
Times are UTC.</footer>
</main>
</body>
</html>
"""


# ------------------------------------------------------------------ registry views
def latest_licences(conn: Connection) -> dict[str, IssuedLicence]:
    """Each customer's licence with the highest serial."""
    cols = [licences.c[f.name] for f in attrs.fields(IssuedLicence)]
    latest: dict[str, IssuedLicence] = {}
    for row in conn.execute(sa.select(*cols).order_by(licences.c.customer,
                                                      licences.c.serial)):
        lic = IssuedLicence(*row)
        latest[lic.customer] = lic
    return latest


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@attrs.frozen
class ExpiringLicence:
    customer: str
    licence_id: str
    serial: int
    expires_at: datetime
    days_left: int


def expiring_licences(source: Engine | Connection, *, now: datetime,
                      within_days: int = EXPIRY_WINDOW_DAYS) -> list[ExpiringLicence]:
    """Customers whose latest licence expires after ``now`` and within ``within_days``,
    soonest first."""
    if isinstance(source, Engine):
        with source.connect() as conn:
            return expiring_licences(conn, now=now, within_days=within_days)
    horizon = now + timedelta(days=within_days)
    found = []
    for lic in latest_licences(source).values():
        expires = _instant(lic.expires_at)
        if now < expires <= horizon:
            found.append(ExpiringLicence(lic.customer, lic.licence_id, lic.serial, expires,
                                         (expires - now).days))
    return sorted(found, key=lambda e: (e.expires_at, e.customer))


def open_findings(engine: Engine) -> list[Finding]:
    """The open findings, most severe first (the watchlist's order)."""
    return Findings(engine).watchlist()


@attrs.frozen
class CustomerOverview:
    customer: str
    licence_id: str | None
    serial: int | None
    expires_at: str | None
    master_key: str | None
    last_export_day: str | None
    last_record_id: int
    open_findings: int
    worst_severity: int | None


def customers_overview(engine: Engine) -> list[CustomerOverview]:
    """Per customer: latest licence (serial, expiry, master key), last export day received,
    the last record id applied, open findings."""
    findings = open_findings(engine)
    count: dict[str, int] = defaultdict(int)
    worst: dict[str, int] = {}
    for f in findings:
        count[f.customer] += 1
        worst[f.customer] = max(worst.get(f.customer, 0), int(f.severity))
    with engine.connect() as conn:
        names = known_customers(conn)
        latest = latest_licences(conn)
        last = {r.customer: r for r in conn.execute(
            sa.select(states.c.customer, states.c.last_day, states.c.record_id))}
    rows = []
    for name in names:
        lic = latest.get(name)
        st = last.get(name)
        rows.append(CustomerOverview(
            customer=name, licence_id=lic.licence_id if lic else None,
            serial=lic.serial if lic else None, expires_at=lic.expires_at if lic else None,
            master_key=lic.master_key if lic else None,
            last_export_day=st.last_day if st else None,
            last_record_id=int(st.record_id) if st else 0, open_findings=count.get(name, 0),
            worst_severity=worst.get(name)))
    return rows


def customers_table(rows: Sequence[CustomerOverview]) -> str:
    if not rows:
        return "no customers yet"
    return table(("customer", "serial", "licence", "expires", "master key", "last export",
                  "findings"),
                 [(r.customer, r.serial or "-", r.licence_id or "-",
                   (r.expires_at or "-")[:10], r.master_key or "-", r.last_export_day or "-",
                   r.open_findings) for r in rows], right=(1, 6))
