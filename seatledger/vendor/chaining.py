"""Chained masters in billing: a seat is billed once, at the master closest to the agent.

A chained (downstream) master D is a site S of its upstream master U: every seat D grants is
also a seat of S at U, and both masters export it. D's export is the one with the agent's
class, tenant and campaign, so the seat is billed at D and taken off U's bill
(docs/chaining.md). What says that S is D is D's own ledger: its ``UpstreamLinked(upstream,
site, ca)`` records, kept by the analytics (:data:`upstream_links`). U's own export cannot
make a site chained, so a customer cannot take its seats off its bill by naming a site.

The rule, per UTC month:
- D's link names U by origin; U is the customer whose licences in the registry have that
  ``master_origin``. A link counts in each month it is in force in: from its record time to
  D's next link.
- A link is not honoured when no customer's licence has its origin, when licences of two
  customers have it (ambiguous), when D names itself, or when it is on a cycle (D under U
  under ... under D): a chain is a tree, and on a cycle each customer would take the
  other's seats off its bill.
- Per agent class, U's seat time at S is taken off U's bill up to D's own seat time of that
  class in the month (all of it: what D is billed for and what D's own downstream masters
  took off D's bill), drawn in link order when D names several sites. The rest stays
  billed at U. So a link in an export without the seats takes nothing off: no bill goes
  down by more than another customer's seat time.
- Peaks and over-use stay U's: they are U's concurrency against U's licence. The chained
  sites' share of U's over-use agent-hours is shown, not taken off.

The reads are one month's index each, and nothing is read beyond the links when no link is
in force (the usual case).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ledger.domain.values import AGENT_CLASSES
from projections.timestamps import US_PER_HOUR
from seatledger.vendor.analytics import (
    month_label,
    month_range,
    site_months,
    upstream_links,
    usage_months,
)
from seatledger.vendor.registry import licences

__all__ = ["ChainedSite", "Chaining", "Link", "allocate", "month_chaining", "resolve"]


@attrs.frozen
class Link:
    """One ``UpstreamLinked`` record of a downstream customer."""

    downstream: str
    record_id: int
    upstream: str  # the upstream master's origin
    site: str  # the downstream's site name at the upstream
    since_us: int
    until_us: int | None  # the downstream's next link, if any

    def in_force(self, start_us: int, end_us: int) -> bool:
        """Whether the link is in force for some time of [start_us, end_us)."""
        until = end_us if self.until_us is None else min(self.until_us, end_us)
        return max(self.since_us, start_us) < until


@attrs.frozen
class ChainedSite:
    """A site of an upstream customer whose seats are a downstream customer's."""

    site: str
    billed_at: tuple[str, ...]  # the downstream customer(s) whose links name it
    agent_hours: float  # taken off the upstream's bill: billed at the downstream
    recorded_agent_hours: float  # the site's seat time; the rest stays billed upstream
    overuse_agent_hours: float  # its share of the upstream's over-use (billed upstream)


@attrs.frozen
class Chaining:
    """One month's chained seats."""

    # (upstream, class): seat time taken off its bill, and the chained sites' over-use share
    taken_us: Mapping[tuple[str, str], int] = attrs.field(factory=dict)
    overuse_us: Mapping[tuple[str, str], int] = attrs.field(factory=dict)
    sites: Mapping[str, tuple[ChainedSite, ...]] = attrs.field(factory=dict)  # by upstream
    upstreams: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)  # "upstream:site"


def resolve(links: Iterable[Link], owners: Mapping[str, set[str]]
            ) -> list[tuple[Link, str]]:
    """The links honoured, each with its upstream customer, in link order.

    ``owners``: per origin, the customers whose licences have it.
    """
    found = []
    for link in sorted(links, key=lambda k: (k.since_us, k.downstream, k.record_id)):
        named = owners.get(link.upstream, set())
        if len(named) == 1 and (upstream := next(iter(named))) != link.downstream:
            found.append((link, upstream))
    cyclic = _on_cycles({(link.downstream, upstream) for link, upstream in found})
    return [(link, u) for link, u in found if (link.downstream, u) not in cyclic]


def _on_cycles(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (downstream, upstream) edges on a cycle: the downstream is above its upstream."""
    above: dict[str, set[str]] = defaultdict(set)
    for d, u in edges:
        above[d].add(u)

    def reaches(start: str, goal: str) -> bool:
        seen: set[str] = set()
        todo = [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(above[node])
        return False

    return {(d, u) for d, u in edges if reaches(u, d)}


def allocate(honoured: Sequence[tuple[Link, str]],
             site_us: Mapping[tuple[str, str, str], tuple[int, int]],
             own_us: Mapping[tuple[str, str], int]) -> Chaining:
    """Take chained seat time off the upstreams' bills.

    ``site_us``: (upstream, site, class) -> (seat time, over-use share) in the month;
    ``own_us``: (downstream, class) -> its seat time in the month, the most its links can
    take off.
    """
    budget = dict(own_us)
    left = {key: agent for key, (agent, _) in site_us.items()}
    classes: dict[tuple[str, str], list[str]] = defaultdict(list)
    for u, s, cls in site_us:
        classes[(u, s)].append(cls)
    taken: dict[tuple[str, str], int] = defaultdict(int)
    taken_at: dict[tuple[str, str], int] = defaultdict(int)  # (upstream, site)
    billed_at: dict[tuple[str, str], list[str]] = defaultdict(list)
    upstreams: dict[str, list[str]] = defaultdict(list)
    for link, u in honoured:
        d, s = link.downstream, link.site
        if f"{u}:{s}" not in upstreams[d]:
            upstreams[d].append(f"{u}:{s}")
        if (u, s) not in classes:
            continue  # no seats at that site this month
        if d not in billed_at[(u, s)]:
            billed_at[(u, s)].append(d)
        for cls in classes[(u, s)]:
            take = min(left[(u, s, cls)], budget.get((d, cls), 0))
            if take > 0:
                left[(u, s, cls)] -= take
                budget[(d, cls)] -= take
                taken[(u, cls)] += take
                taken_at[(u, s)] += take
    overuse: dict[tuple[str, str], int] = defaultdict(int)
    sites: dict[str, list[ChainedSite]] = defaultdict(list)
    for (u, s), ds in sorted(billed_at.items()):
        recorded = sum(site_us[(u, s, cls)][0] for cls in classes[(u, s)])
        excess = 0
        for cls in classes[(u, s)]:
            overuse[(u, cls)] += site_us[(u, s, cls)][1]
            excess += site_us[(u, s, cls)][1]
        sites[u].append(ChainedSite(s, tuple(ds), taken_at[(u, s)] / US_PER_HOUR,
                                    recorded / US_PER_HOUR, excess / US_PER_HOUR))
    return Chaining(dict(taken), dict(overuse), {u: tuple(v) for u, v in sites.items()},
                    {d: tuple(v) for d, v in upstreams.items()})


def month_chaining(conn: Connection, month: int) -> Chaining:
    """The chained seats of a month (an index of :func:`month_index`), every customer's."""
    start, end = month_range(month)
    found = [Link(*row) for row in conn.execute(
        sa.select(upstream_links.c.customer, upstream_links.c.record_id,
                  upstream_links.c.upstream, upstream_links.c.site,
                  upstream_links.c.since_us, upstream_links.c.until_us)
        .where((upstream_links.c.since_us < end)
               & (upstream_links.c.until_us.is_(None) | (upstream_links.c.until_us > start))))]
    links = [link for link in found if link.in_force(start, end)]
    if not links:
        return Chaining()
    owners: dict[str, set[str]] = defaultdict(set)
    for customer, origin in conn.execute(
            sa.select(licences.c.customer, licences.c.master_origin).distinct()
            .where(licences.c.master_origin.in_({link.upstream for link in links}))):
        owners[origin].add(customer)
    honoured = resolve(links, owners)
    if not honoured:
        return Chaining()
    label = month_label(month)
    named = {(u, link.site) for link, u in honoured}
    site_us = {(r.customer, r.site, r.agent_class): (int(r.agent_us), int(r.excess_us))
               for r in conn.execute(sa.select(site_months).where(
                   (site_months.c.month == label)
                   & site_months.c.customer.in_({u for u, _ in named})))
               if (r.customer, r.site) in named}
    own_us = {(r.customer, r.pool): int(r.agent_us) for r in conn.execute(
        sa.select(usage_months.c.customer, usage_months.c.pool, usage_months.c.agent_us)
        .where((usage_months.c.month == label)
               & usage_months.c.customer.in_({link.downstream for link, _ in honoured})
               & usage_months.c.pool.in_(AGENT_CLASSES)))}
    return allocate(honoured, site_us, own_us)
