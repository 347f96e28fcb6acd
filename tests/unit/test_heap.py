"""A daemon once serving leaves its start-up heap out of the collector's full passes."""

from __future__ import annotations

import gc
import weakref

from seatledger.daemons.heap import settle_heap


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_settling_collects_the_garbage_then_freezes_what_is_left() -> None:
    kept = Cycle()
    garbage = weakref.ref(Cycle())  # unreachable, in a cycle: only a collection frees it
    assert garbage() is not None
    gc.unfreeze()
    try:
        settle_heap()
        assert garbage() is None  # collected before the freeze, not kept for ever
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert kept.me is kept
