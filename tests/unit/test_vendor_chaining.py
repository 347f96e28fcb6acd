"""The chaining rule of billing on its own (no I/O): which downstream links are honoured,
and how much each takes off its upstream's bill (seatledger.vendor.chaining)."""

from __future__ import annotations

from seatledger.vendor.chaining import Link, allocate, resolve

H = 3_600_000_000  # an hour in microseconds
MARCH = (1_772_323_200_000_000, 1_775_001_600_000_000)  # 2026-03-01 .. 2026-04-01


def link(downstream: str, upstream: str, site: str, since: int = 0,
         until: int | None = None, record_id: int = 1) -> Link:
    return Link(downstream, record_id, upstream, site, MARCH[0] + since * H,
                None if until is None else MARCH[0] + until * H)


OWNERS = {"up.example": {"Up"}, "down.example": {"Down"}, "leaf.example": {"Leaf"},
          "shared.example": {"Up", "Other"}}


def honoured(*links: Link) -> list[tuple[str, str, str]]:
    return [(k.downstream, u, k.site) for k, u in resolve(links, OWNERS)]


def test_the_upstream_is_the_one_customer_whose_licences_have_the_origin() -> None:
    assert honoured(link("Down", "up.example", "s")) == [("Down", "Up", "s")]
    assert honoured(link("Down", "nobody.example", "s")) == []  # no licence has it
    assert honoured(link("Down", "shared.example", "s")) == []  # two customers have it
    assert honoured(link("Up", "up.example", "s")) == []  # chained under itself


def test_a_chain_is_kept_and_a_cycle_is_dropped_whole() -> None:
    tree = (link("Leaf", "down.example", "t"), link("Down", "up.example", "s"))
    assert honoured(*tree) == [("Down", "Up", "s"), ("Leaf", "Down", "t")]  # link order
    # Up claims to be under Leaf: Leaf -> Down -> Up -> Leaf is a cycle, none of it counts.
    assert honoured(*tree, link("Up", "leaf.example", "u")) == []
    assert honoured(link("Down", "up.example", "s"), link("Up", "down.example", "t")) == []


def test_a_link_is_in_force_in_the_months_it_overlaps() -> None:
    start, end = MARCH
    assert link("D", "u", "s", since=-24, until=None).in_force(start, end)
    assert link("D", "u", "s", since=10, until=11).in_force(start, end)
    assert not link("D", "u", "s", since=-24, until=0).in_force(start, end)  # ended as it began
    assert not link("D", "u", "s", since=31 * 24).in_force(start, end)  # from April on
    assert not link("D", "u", "s", since=5, until=5).in_force(start, end)  # replaced at once


def test_the_seat_time_taken_off_is_at_most_the_downstreams_own() -> None:
    honour = resolve([link("Down", "up.example", "s")], OWNERS)
    sites = {("Up", "s", "PRED"): (10 * H, 2 * H), ("Up", "s", "ACD"): (3 * H, 0)}
    chain = allocate(honour, sites, {("Down", "PRED"): 7 * H, ("Down", "ACD"): 5 * H})
    assert chain.taken_us == {("Up", "PRED"): 7 * H, ("Up", "ACD"): 3 * H}
    assert chain.overuse_us == {("Up", "PRED"): 2 * H, ("Up", "ACD"): 0}
    [site] = chain.sites["Up"]
    assert (site.site, site.billed_at, site.agent_hours, site.recorded_agent_hours) == (
        "s", ("Down",), 10.0, 13.0)
    assert chain.upstreams == {"Down": ("Up:s",)}
    # Seats of a class the downstream never used stay billed upstream.
    assert allocate(honour, sites, {("Down", "ACD"): 5 * H}).taken_us == {("Up", "ACD"): 3 * H}


def test_a_downstream_naming_two_sites_covers_them_in_link_order_once() -> None:
    honour = resolve([link("Down", "up.example", "b", since=10, record_id=2),
                      link("Down", "up.example", "a", since=0, until=10, record_id=1)], OWNERS)
    sites = {("Up", "a", "PRED"): (4 * H, 0), ("Up", "b", "PRED"): (4 * H, 0)}
    chain = allocate(honour, sites, {("Down", "PRED"): 6 * H})
    assert chain.taken_us == {("Up", "PRED"): 6 * H}
    assert [(s.site, s.agent_hours) for s in chain.sites["Up"]] == [("a", 4.0), ("b", 2.0)]
    assert chain.upstreams == {"Down": ("Up:a", "Up:b")}


def test_a_middle_master_covers_its_upstream_with_all_its_seat_time() -> None:
    """Leaf under Down (site t) under Up (site s): Down's seat time, its own and Leaf's,
    covers Up's site; Leaf's covers Down's."""
    honour = resolve([link("Leaf", "down.example", "t"), link("Down", "up.example", "s")],
                     OWNERS)
    sites = {("Down", "t", "PRED"): (5 * H, 0), ("Up", "s", "PRED"): (8 * H, 0)}
    own = {("Leaf", "PRED"): 5 * H, ("Down", "PRED"): 8 * H}  # Down: 3 its own + Leaf's 5
    chain = allocate(honour, sites, own)
    assert chain.taken_us == {("Down", "PRED"): 5 * H, ("Up", "PRED"): 8 * H}
    # Billed: Leaf 5, Down 8 - 5 = 3, Up's site 8 - 8 = 0: each seat once.


def test_a_named_site_without_seats_this_month_is_not_listed() -> None:
    honour = resolve([link("Down", "up.example", "s")], OWNERS)
    chain = allocate(honour, {}, {("Down", "PRED"): H})
    assert (chain.taken_us, chain.sites) == ({}, {})
    assert chain.upstreams == {"Down": ("Up:s",)}
