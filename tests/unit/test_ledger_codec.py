"""Snapshots keep decoding: value classes are registered in persistence, by stored code."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from ledger.domain.licence import Seat, Site
from ledger.domain.pools import Pool, PoolState
from ledger.domain.values import GracePolicy, SiteState
from ledger.persistence.codec import VALUE_CLASSES, CompactTranscoder

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_stored_codes_keep_their_classes() -> None:
    assert dict(VALUE_CLASSES) == {0: Pool, 1: Seat, 2: Site, 3: GracePolicy}


def test_a_snapshot_state_round_trips_with_enums_restored() -> None:
    site = Site("north", "fp", {"PRED": 5}, SiteState.CONNECTED, T0, 7,
                {"u1": Seat(1, "PRED", "t", "c", T0), "u2": Seat(2, "ACD", "t", "c", T0)})
    pool = Pool("PRED", ("PRED",), 100, 1, PoolState.OPEN, T0, T0, None, True, 2, False)
    codec = CompactTranscoder()
    state = codec.decode(codec.encode({"sites": {"north": site}, "pools": {"PRED": pool},
                                       "policy": GracePolicy()}))
    assert state["pools"]["PRED"] == pool
    assert type(state["pools"]["PRED"].state) is PoolState
    assert state["sites"]["north"] == site
    assert type(state["sites"]["north"].status) is SiteState
    assert state["sites"]["north"].in_use("PRED") == 1
    assert state["policy"] == GracePolicy()


def test_a_site_stores_only_its_init_fields_not_the_derived_count() -> None:
    site = Site("north", "fp", {}, SiteState.NEW, None, 0, {"u1": Seat(1, "PRED", "", "", T0)})
    inner = msgspec.msgpack.Decoder()
    raw = msgspec.msgpack.decode(CompactTranscoder().encode({"x": site}),
                                 ext_hook=lambda code, data: inner.decode(data))
    ext = raw["x"]
    assert len(ext) == 1 + 7  # the class code, then the seven init fields
    assert ext[:5] == [2, "north", "fp", {}, "new"]
