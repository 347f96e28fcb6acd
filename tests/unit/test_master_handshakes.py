"""The cap on connections that have not authenticated (seatledger.master.handshakes).

Pure bookkeeping; the tests that evict run inside trio, since eviction cancels a scope."""

from __future__ import annotations

import trio
from hypothesis import given
from hypothesis import strategies as st

from seatledger.master.handshakes import PendingHandshakes, Place


def test_one_address_cannot_hold_more_than_its_cap() -> None:
    gate = PendingHandshakes(total=100, per_address=3)
    places = [gate.admit("10.0.0.2") for _ in range(3)]
    assert all(isinstance(p, Place) for p in places)
    assert gate.admit("10.0.0.2") is None
    assert isinstance(gate.admit("10.0.0.3"), Place)
    stats = gate.statistics()
    assert (stats.pending, stats.addresses, stats.refused, stats.evicted) == (4, 2, 1, 0)


def test_a_released_place_can_be_taken_again() -> None:
    gate = PendingHandshakes(total=2, per_address=2)
    first = gate.admit("10.0.0.2")
    assert first is not None and gate.admit("10.0.0.2") is not None
    assert gate.admit("10.0.0.2") is None
    gate.release(first)
    gate.release(first)  # idempotent
    assert len(gate) == 1
    assert gate.admit("10.0.0.2") is not None


async def test_when_full_a_newcomer_takes_the_oldest_place_of_the_heaviest_address() -> None:
    gate = PendingHandshakes(total=4, per_address=4)
    flood = [gate.admit("10.0.0.2") for _ in range(4)]
    real = gate.admit("127.0.0.1")
    assert real is not None and len(gate) == 4
    assert flood[0] is not None and flood[0].evicted and not flood[0].held
    assert not any(p is not None and p.evicted for p in flood[1:])
    assert gate.statistics().evicted == 1


def test_when_full_a_newcomer_as_heavy_as_the_heaviest_is_refused() -> None:
    gate = PendingHandshakes(total=4, per_address=4)
    for address in ("10.0.0.2", "10.0.0.2", "10.0.0.3", "10.0.0.3"):
        assert gate.admit(address) is not None
    assert gate.admit("10.0.0.3") is None  # it would only take its own neighbour's place
    assert gate.statistics().refused == 1 and gate.statistics().evicted == 0


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 6)), max_size=300))
def test_the_caps_always_hold(steps: list[tuple[bool, int]]) -> None:
    async def run() -> None:
        gate = PendingHandshakes(total=8, per_address=3)
        placed: list[Place] = []
        for admit, n in steps:
            if admit:
                place = gate.admit(f"10.0.0.{n}")
                if place is not None:
                    placed.append(place)
            elif placed:
                gate.release(placed.pop(n % len(placed)))
            live = [p for p in placed if p.held]
            assert len(gate) == len(live) <= 8
            for address in {p.address for p in live}:
                assert sum(p.address == address for p in live) <= 3
            # A place lost without a release was evicted, and its handshake cancelled.
            assert all(p.evicted for p in placed if not p.held)

    trio.run(run)
