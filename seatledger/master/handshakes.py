"""The cap on connections that have not authenticated yet (issue 9, section 5).

Every accepted TCP connection holds a place here until its TLS handshake ends, and a
connection that finds no place is closed at once, before any TLS work, so idle or slow
connections cannot exhaust the master's files and memory. Two caps:

* per remote address (``per_address``): one address cannot hold more places than that;
* in all (``total``). When every place is taken, a newcomer from an address holding few
  places takes the oldest place of the address holding the most (that connection is
  cancelled), so a flood from a few addresses cannot lock a real site out; a newcomer whose
  address already holds about as many as the largest holder is refused instead.

Pure bookkeeping: no I/O. Each place carries a :class:`trio.CancelScope` that the handshake
runs in, which :meth:`PendingHandshakes.admit` cancels to evict it.
"""

from __future__ import annotations

from collections import deque

import attrs
import trio


class Place:
    """One connection's place while its handshake runs (run it inside :attr:`scope`)."""

    __slots__ = ("address", "held", "scope")

    def __init__(self, address: str) -> None:
        self.address = address
        self.scope = trio.CancelScope()
        self.held = True

    @property
    def evicted(self) -> bool:
        """True if the place was taken for another connection (the scope is cancelled)."""
        return self.scope.cancel_called


@attrs.frozen
class PendingStatistics:
    pending: int
    """Connections holding a place now (never more than the total cap)."""
    addresses: int
    """Remote addresses holding at least one place."""
    refused: int
    """Connections closed at once because no place was free for them."""
    evicted: int
    """Handshakes cancelled to give their place to a newcomer from a lighter address."""


class PendingHandshakes:
    """Places for connections whose handshake has not finished; see the module docstring."""

    def __init__(self, *, total: int, per_address: int) -> None:
        if total < 1 or per_address < 1:
            raise ValueError("the handshake caps must be at least 1")
        self.total = total
        self.per_address = per_address
        self._places: dict[str, deque[Place]] = {}
        self._pending = 0
        self._refused = 0
        self._evicted = 0

    def __len__(self) -> int:
        return self._pending

    def statistics(self) -> PendingStatistics:
        return PendingStatistics(self._pending, len(self._places), self._refused, self._evicted)

    def admit(self, address: str) -> Place | None:
        """A place for a connection from ``address``, or None: close it at once."""
        mine = self._places.get(address)
        held = len(mine) if mine is not None else 0
        if held >= self.per_address:
            self._refused += 1
            return None
        if self._pending >= self.total and not self._evict_for(held):
            self._refused += 1
            return None
        place = Place(address)
        if mine is None:
            mine = self._places[address] = deque()
        mine.append(place)
        self._pending += 1
        return place

    def release(self, place: Place) -> None:
        """The handshake ended (either way): free the place. Idempotent."""
        if not place.held:
            return
        place.held = False
        places = self._places[place.address]
        places.remove(place)
        if not places:
            del self._places[place.address]
        self._pending -= 1

    def _evict_for(self, held: int) -> bool:
        """Free a place for a newcomer whose address holds ``held``: take the oldest of the
        heaviest address, if that address holds more than the newcomer's would."""
        heaviest = max(self._places.values(), key=len)
        if len(heaviest) <= held + 1:
            return False
        victim = heaviest[0]
        self.release(victim)
        victim.scope.cancel()
        self._evicted += 1
        return True


__all__ = ["PendingHandshakes", "PendingStatistics", "Place"]
