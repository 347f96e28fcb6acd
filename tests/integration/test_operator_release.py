"""An operator's ``site seats`` and ``site release`` in the master's process: the admin
socket's operations run in the writer, and a site whose Hello named ``reclaim`` is told
(Reclaimed) after the release commits. Over in-memory streams, no TLS, on a real SQLite
ledger and trio's MockClock (as test_master_session.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from ledger import AcquireSeat, ConnectSite, LedgerApp, ManualClock
from seatledger.master.admin import OPERATIONS, SeatsReleased, handler
from seatledger.master.server import trio_now
from seatledger.master.session import Sessions
from seatledger.master.writer import Writer
from tests.conftest import START
from tests.integration.test_master_session import SETTINGS, Site
from transport import (
    PROTOCOL_VERSION,
    Acquire,
    Granted,
    HeldSeat,
    Hello,
    Reclaimed,
    Sync,
    SyncDone,
    Welcome,
)

Clock = trio.testing.MockClock
TOLD = "an operator at the master released this seat"


@attrs.frozen
class Master:
    """A writer whose after-batch hook tells the sessions, as the daemon's does, and the
    admin socket's handler on it."""

    ledger: LedgerApp
    sessions: Sessions
    admin: Any
    nursery: trio.Nursery

    def open(self, name: str) -> Site:
        ours, theirs = trio.testing.memory_stream_pair()
        site = Site(theirs, name)

        async def serve() -> None:
            await self.sessions.serve(ours, name)
            site.ended.set()

        self.nursery.start_soon(serve)
        return site

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        answer: dict[str, Any] = await self.admin({"op": op, "args": args})
        return answer


@pytest.fixture
async def master(ledger: LedgerApp, clock: ManualClock) -> AsyncIterator[Master]:
    sessions: list[Sessions] = []

    def after_batch(outcomes: list[Any]) -> None:  # Master._tell_reclaimed's rule
        for outcome in outcomes:
            if isinstance(outcome, SeatsReleased):
                sessions[0].reclaim(outcome.site, outcome.users)

    writer = Writer(ledger, clock, trio_now(START), max_batch=100, queue_size=100,
                    worker_thread=False, after_batch=after_batch)
    sessions.append(Sessions(ledger, writer, SETTINGS))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        yield Master(ledger, sessions[0], handler(writer.submit, lambda: {}), nursery)
        nursery.cancel_scope.cancel()


async def connect(site: Site, capabilities: tuple[str, ...] = ("reclaim",)) -> None:
    await site.send(Hello(site.name, PROTOCOL_VERSION, capabilities))
    assert isinstance(await site.receive(), Welcome)
    await site.send(Sync())
    assert await site.receive() == SyncDone(0, 0, 0)


async def seat(site: Site, request_id: int, user: str, agent_class: str = "PRED") -> None:
    await site.send(Acquire(request_id, user, agent_class, "acme", "spring"))
    assert isinstance(await site.receive(), Granted)


async def test_the_seats_op_shows_who_holds_which_seat_and_the_sites_state(
        master: Master, autojump_clock: Clock) -> None:
    north = master.open("north")
    await connect(north)
    await seat(north, 1, "olga")
    await seat(north, 2, "ivan", "ACD")
    answer = await master.call("site.seats", name="north")
    assert answer["ok"] and answer["site"] == "north" and answer["state"] == "connected"
    assert [(s["user"], s["agent_class"], s["tenant"], s["campaign"]) for s in answer["seats"]
            ] == [("olga", "PRED", "acme", "spring"), ("ivan", "ACD", "acme", "spring")]
    assert answer["seats"][0]["since"] == START.isoformat()
    refused = await master.call("site.seats", name="atlantis")
    assert refused == {"ok": False, "reason": "UnknownSiteError",
                       "detail": "site 'atlantis' is not enrolled"}


async def test_a_released_seat_is_recorded_and_the_site_is_told(
        master: Master, autojump_clock: Clock) -> None:
    north = master.open("north")
    await connect(north)
    for i, user in enumerate(("olga", "ivan", "petr"), 1):
        await seat(north, i, user)
    answer = await master.call("site.release", name="north", user="ivan")
    assert answer["ok"] and answer["site"] == "north"
    assert [s["user"] for s in answer["released"]] == ["ivan"]
    assert await north.receive() == Reclaimed("ivan", "operator", TOLD)
    assert set(master.ledger.licence.sites["north"].seats) == {"olga", "petr"}
    releases = [(e.user, e.reason) for _, e in master.ledger.events()
                if type(e).__name__ == "SeatReleased"]
    assert releases == [("ivan", "operator")]

    answer = await master.call("site.release", name="north", all=True)
    assert sorted(s["user"] for s in answer["released"]) == ["olga", "petr"]
    told = {await north.receive(), await north.receive()}
    assert told == {Reclaimed("olga", text=TOLD), Reclaimed("petr", text=TOLD)}
    assert master.ledger.licence.sites["north"].seats == {}


async def test_a_site_that_did_not_say_reclaim_is_not_sent_reclaimed(
        master: Master, autojump_clock: Clock) -> None:
    old = master.open("north")
    await connect(old, capabilities=())
    await seat(old, 1, "olga")
    await seat(old, 2, "ivan")
    assert (await master.call("site.release", name="north", user="olga"))["ok"]
    # The next thing the old slave hears is the answer to its next request, not a Reclaimed
    # it could not decode.
    await old.send(Acquire(3, "petr", "PRED"))
    answer = await old.receive()
    assert isinstance(answer, Granted) and answer.request_id == 3


async def test_a_site_whose_sync_has_not_arrived_is_not_told(
        master: Master, autojump_clock: Clock) -> None:
    north = master.open("north")
    await connect(north)
    await seat(north, 1, "olga")
    reconnecting = master.open("north")  # it reconnects: a new session, mid-handshake
    await reconnecting.send(Hello("north", PROTOCOL_VERSION, ("reclaim",)))
    assert isinstance(await reconnecting.receive(), Welcome)
    assert (await master.call("site.release", name="north", user="olga"))["ok"]
    # Its Sync, on its way, still holds olga: the master counts her again, and both agree.
    await reconnecting.send(Sync(held=(HeldSeat("olga", "PRED", "", ""),)))
    assert await reconnecting.receive() == SyncDone(0, 0, 1)
    assert "olga" in master.ledger.licence.sites["north"].seats


async def test_bad_requests_and_unknown_seats_are_refused_with_nothing_recorded(
        master: Master, autojump_clock: Clock) -> None:
    before = master.ledger.max_id()
    assert await master.call("site.release", name="north", user="nobody") == {
        "ok": False, "reason": "UnknownSeatError",
        "detail": "user 'nobody' holds no seat at site 'north'"}
    assert (await master.call("site.release", name="atlantis", all=True))["reason"] == (
        "UnknownSiteError")
    for args in ({"name": "north"}, {"name": "north", "user": "u", "all": True}):
        answer = await master.call("site.release", **args)
        assert answer["ok"] is False and answer["reason"] == "bad_request", answer
        assert "either user or all" in answer["detail"]
    assert master.ledger.max_id() == before


def test_the_operations_work_on_the_ledger_directly_with_no_master(ledger: LedgerApp) -> None:
    """A stopped master: the command takes the lock and runs the same operation itself."""
    ledger.execute([ConnectSite("south"), AcquireSeat("south", "u1", "PRED"),
                    AcquireSeat("south", "u2", "ACD")])
    shown = OPERATIONS["site.seats"](ledger, {"name": "south"})
    assert [s["user"] for s in shown["seats"]] == ["u1", "u2"]
    answer = OPERATIONS["site.release"](ledger, {"name": "south", "user": "u2"})
    assert isinstance(answer, SeatsReleased) and answer.users == ["u2"]
    assert answer["released"][0]["agent_class"] == "ACD"
    assert list(ledger.licence.sites["south"].seats) == ["u1"]
