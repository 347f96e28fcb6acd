"""A standby's answer, in memory (no sockets): the slave's session raises StandbyMasterError
for Error ``standby`` (the connector then tries its other master at once, and keeps trying
soon without counting failed rounds while a failover is under way); any other refusal stays
an ordinary unreachable master."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from seatledger.slave.errors import MasterUnreachableError
from seatledger.slave.link import StandbyMasterError
from tests.unit.test_slave_link import RawPeer, Session, run_against
from transport import Error, Hello
from transport._messages import STANDBY


async def test_a_standby_masters_answer_is_told_apart(
        autojump_clock: trio.testing.MockClock) -> None:
    async def standby(peer: RawPeer) -> None:
        assert isinstance(await peer.receive(), Hello)
        await peer.send(Error(STANDBY, "this master is a standby; the active master is b"))

    session = Session()
    with pytest.raises(StandbyMasterError, match="the active master is b"):
        await run_against(standby, session)
    assert session.synced == []


async def test_a_standby_that_answers_before_the_hello_is_read_is_told_apart(
        autojump_clock: trio.testing.MockClock) -> None:
    async def standby(peer: RawPeer) -> None:  # as the master's standby does: at once
        await peer.send(Error(STANDBY, "standby"))
        await peer.stream.aclose()

    with pytest.raises(StandbyMasterError):
        await run_against(standby, Session())


async def test_another_refusal_is_not_a_standby(autojump_clock: trio.testing.MockClock) -> None:
    async def refuses(peer: RawPeer) -> None:
        await peer.receive()
        await peer.send(Error("unknown_site", "not enrolled"))

    with pytest.raises(MasterUnreachableError) as raised:
        await run_against(refuses, Session())
    assert not isinstance(raised.value, StandbyMasterError)
