"""Three tiers over real mutual TLS on 127.0.0.1 (site → master → supermaster), on trio's
clock: a seat is granted only when both masters grant it, a refusal from the top travels
down as ``upstream:<reason>``, releases go up, the top's notices reach the bottom's sites,
and an unreachable supermaster is survived as a slave survives its master."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from ledger import Licence
from seatledger.master.admin import describe_process, handler
from seatledger.master.server import trio_now
from seatledger.slave.chained import ChainedConnector
from seatledger.slave.connector import (
    OFFLINE,
    ONLINE,
    SeatRefusedError,
    SlaveConnector,
    SlaveSettings,
)
from tests.integration.test_wire import START, World

SITE = SlaveSettings(retry_interval=5, cutoff_attempts=3, cutoff_retry=900)
UPSTREAM = SlaveSettings(retry_interval=5, cutoff_attempts=3, cutoff_retry=900,
                         answer_timeout=2.0)


class Chain:
    """A supermaster (``top``), a master chained under it as site ``mid`` (``mid``), and a
    site ``north`` enrolled at the middle master."""

    def __init__(self, root: Path, *, mid_limit: int | None = None) -> None:
        self.root = root
        self.top = World(root / "top")
        self.top.enrol("mid", **({"PRED": mid_limit} if mid_limit is not None else {}))
        self.top.enrol("east", PRED=10)
        self.mid = World(root / "mid")
        self.mid.enrol("north", PRED=40, ACD=10)

    def upstream(self) -> ChainedConnector:
        return ChainedConnector(self.top.bundle("mid"), self.root / "mid-upstream",
                                settings=UPSTREAM, now=trio_now(START))

    def north(self) -> SlaveConnector:
        """The slave connector of the site ``north``, at the middle master."""
        return SlaveConnector(self.mid.bundle("north"), self.root / "north", settings=SITE,
                              now=trio_now(START))

    async def start(self, nursery: trio.Nursery) -> None:
        await self.top.start_master(nursery)
        await self.mid.start_master(nursery, upstream=self.upstream())

    def close(self) -> None:
        self.top.app.close()
        self.mid.app.close()


@pytest.fixture
async def chain(tmp_path: Path) -> AsyncIterator[Chain]:
    c = Chain(tmp_path, mid_limit=3)
    yield c
    c.close()


def _events(world: World, name: str) -> list[object]:
    return [e for _, e in world.app.events() if type(e).__name__ == name]


async def _settled() -> None:
    """Let the middle master reconcile with the top (releases go up in its next pass)."""
    await trio.sleep(1)


async def test_a_seat_is_granted_by_both_masters_and_released_at_both(
        chain: Chain, nursery: trio.Nursery, tmp_path: Path,
        autojump_clock: trio.testing.MockClock) -> None:
    await chain.start(nursery)
    async with chain.north() as north:
        await north.wait_online()
        seat = await north.acquire("alice", "PRED", tenant="acme", campaign="sales")
        assert seat.status == "normal"
        top_seats = chain.top.app.licence.sites["mid"].seats
        assert set(top_seats) == {"north/alice"}
        assert (top_seats["north/alice"].tenant, top_seats["north/alice"].campaign) == (
            "acme", "sales")
        assert set(chain.mid.app.licence.sites["north"].seats) == {"alice"}
        await north.release("alice")
        await _settled()
        assert chain.top.app.licence.sites["mid"].seats == {}
        assert chain.mid.app.licence.sites["north"].seats == {}
    linked = _events(chain.mid, "UpstreamLinked")
    assert len(linked) == 1
    assert isinstance(linked[0], Licence.UpstreamLinked)
    assert (linked[0].upstream, linked[0].site) == (chain.top.config.origin, "mid")
    assert chain.mid.app.licence.upstream is not None


async def test_a_refusal_from_the_top_travels_down_with_its_reason(
        chain: Chain, nursery: trio.Nursery, tmp_path: Path,
        autojump_clock: trio.testing.MockClock) -> None:
    await chain.start(nursery)
    async with chain.north() as north:
        await north.wait_online()
        for user in ("a", "b", "c"):  # the top allows its site "mid" three PRED seats
            await north.acquire(user, "PRED")
        with pytest.raises(SeatRefusedError) as refused:
            await north.acquire("d", "PRED")
        assert refused.value.reason == "upstream:site_limit"
        assert "d" not in chain.mid.app.licence.sites["north"].seats
        # The middle master recorded the refusal with the top's reason; the top its own.
        mid_refusals = _events(chain.mid, "SeatRefused")
        assert [(e.user, e.reason) for e in mid_refusals] == [  # type: ignore[attr-defined]
            ("d", "upstream:site_limit")]
        top_refusals = _events(chain.top, "SeatRefused")
        assert [(e.user, e.reason) for e in top_refusals] == [  # type: ignore[attr-defined]
            ("north/d", "site_limit")]
        # Once a seat is free at the top, the next log-on passes both.
        await north.release("a")
        await _settled()
        assert (await north.acquire("d", "PRED")).status == "normal"
        assert set(chain.top.app.licence.sites["mid"].seats) == {"north/b", "north/c", "north/d"}


async def test_the_middle_masters_own_refusal_never_reaches_the_top(
        chain: Chain, nursery: trio.Nursery, tmp_path: Path,
        autojump_clock: trio.testing.MockClock) -> None:
    await chain.start(nursery)
    async with chain.north() as north:
        await north.wait_online()
        with pytest.raises(SeatRefusedError) as refused:
            await north.acquire("x", "AGENT")  # not licensed at the middle master
        assert refused.value.reason == "class_not_licensed"
    assert _events(chain.top, "SeatRefused") == []
    assert _events(chain.top, "SeatGranted") == []


async def test_overuse_at_the_top_is_normal_below_and_the_tops_notices_reach_the_sites(
        tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    chain = Chain(tmp_path)
    try:
        chain.top.app.amend_licence(limits={"PRED": 100, "ACD": 1})
        await chain.start(nursery)
        async with chain.north() as north:
            await north.wait_online()
            first = await north.acquire("x1", "ACD")
            second = await north.acquire("x2", "ACD")
            # The middle master's ACD limit is 20: normal there; over-use at the top.
            assert (first.status, second.status) == ("normal", "normal")
            top = chain.top.app.licence.sites["mid"].seats
            assert (top["north/x1"].overuse, top["north/x2"].overuse) == (False, True)
            assert chain.top.app.licence.pools["ACD"].overuse
            assert not chain.mid.app.licence.pools["ACD"].overuse
            await trio.sleep(1)
            texts = [a.text for a in north.alerts]
            assert any("ACD" in t and "grace" in t.lower() for t in texts), texts
    finally:
        chain.close()


async def test_an_unreachable_top_is_survived_and_the_journal_syncs_once(
        chain: Chain, nursery: trio.Nursery, tmp_path: Path,
        autojump_clock: trio.testing.MockClock) -> None:
    await chain.start(nursery)
    top_port = chain.top.port
    async with chain.north() as north:
        await north.wait_online()
        await north.acquire("a", "PRED")
        chain.top.stop_master()
        await trio.sleep(1)
        # The top is gone: the middle master's own licence is the limit, beyond the three
        # seats the top would allow, and what it grants is journalled for the top.
        for user in ("b", "c", "d", "e"):
            assert (await north.acquire(user, "PRED")).status == "normal"
        await north.release("b")
        mid = chain.mid.master
        assert mid is not None and mid.upstream is not None
        assert mid.upstream.connector.state == OFFLINE
        assert set(chain.mid.app.licence.sites["north"].seats) == {"a", "c", "d", "e"}
        await chain.top.start_master(nursery, top_port)
        await trio.sleep(30)  # the middle master's next round finds the top back
        assert mid.upstream.connector.state == ONLINE
    await _settled()
    grants = [e.user for e in _events(chain.top, "SeatGranted")]  # type: ignore[attr-defined]
    assert sorted(grants) == ["north/a", "north/b", "north/c", "north/d", "north/e"]
    offline = [e.user for e in _events(chain.top, "SeatGranted")  # type: ignore[attr-defined]
               if e.offline]  # type: ignore[attr-defined]
    assert sorted(offline) == ["north/b", "north/c", "north/d", "north/e"]
    # The seats held below are the seats held at the top, once each.
    held = {f"north/{u}" for u in chain.mid.app.licence.sites["north"].seats}
    assert held == {"north/a", "north/c", "north/d", "north/e"}
    assert set(chain.top.app.licence.sites["mid"].seats) == held


async def test_a_middle_master_cut_off_from_the_top_keeps_to_the_demo_limit(
        chain: Chain, nursery: trio.Nursery, tmp_path: Path,
        autojump_clock: trio.testing.MockClock) -> None:
    await chain.start(nursery)
    async with chain.north() as north:
        await north.wait_online()
        await north.acquire("held", "PRED")
        chain.top.stop_master()
        await trio.sleep(60)  # the first failed round, then three counted ones
        mid = chain.mid.master
        assert mid is not None and mid.upstream is not None
        assert mid.upstream.connector.state == "cut_off"
        for n in range(5):  # the slave's demo limit, counted upstream
            await north.acquire(f"demo{n}", "PRED")
        with pytest.raises(SeatRefusedError) as refused:
            await north.acquire("one-more", "PRED")
        assert refused.value.reason == "upstream:cut_off"
        # The seat held before the outage is still held below: the middle master's sites
        # keep their seats; only new ones are limited.
        assert "held" in chain.mid.app.licence.sites["north"].seats


async def test_an_operator_release_at_the_top_reaches_the_site(
        chain: Chain, nursery: trio.Nursery, tmp_path: Path,
        autojump_clock: trio.testing.MockClock) -> None:
    await chain.start(nursery)
    assert chain.top.master is not None
    admin = handler(chain.top.master.submit, describe_process)
    async with chain.north() as north:
        await north.wait_online()
        await north.acquire("alice", "PRED")
        await north.acquire("bob", "PRED")
        answer = await admin({"op": "site.release",
                              "args": {"name": "mid", "user": "north/alice"}})
        assert answer["ok"], answer
        await _settled()
        # Released at the top, then at the middle master (reason operator), and the site
        # was told: it holds only bob now, at every level.
        assert set(north.seats()) == {"bob"}
        assert set(chain.mid.app.licence.sites["north"].seats) == {"bob"}
        assert set(chain.top.app.licence.sites["mid"].seats) == {"north/bob"}
        released = [e for e in _events(chain.mid, "SeatReleased")]
        assert [(e.user, e.reason) for e in released] == [  # type: ignore[attr-defined]
            ("alice", "operator")]
        await trio.sleep(5)  # and nothing asks for it again
        assert set(chain.top.app.licence.sites["mid"].seats) == {"north/bob"}
