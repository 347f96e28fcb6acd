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


def test_a_sites_seats_are_stored_as_one_list_of_rows() -> None:
    """Seats are most of a large snapshot: one extension value holds a site's seats as
    [user, [fields]] rows, not one extension value per seat."""
    seats = {f"u{i}": Seat(i, "PRED", "t", f"c{i % 3}", T0, i % 2 == 0) for i in range(50)}
    codec = CompactTranscoder()
    data = codec.encode({"seats": seats})
    rows = msgspec.msgpack.decode(data, ext_hook=lambda code, d: (code, msgspec.msgpack.decode(d)))
    code, stored = rows["seats"]
    assert code == 3 and len(stored) == 50
    assert stored[4] == ["u4", [4, "PRED", "t", "c1", T0, True, False]]
    assert codec.decode(data) == {"seats": seats}


def test_seats_stored_one_by_one_by_earlier_versions_still_decode() -> None:
    """Snapshots taken before the rows: each seat an extension value of its own."""
    inner = msgspec.msgpack.Encoder()
    old = {"seats": {"u1": msgspec.msgpack.Ext(2, inner.encode([1, 1, "ACD", "t", "c", T0,
                                                                  False, True]))}}
    assert CompactTranscoder().decode(msgspec.msgpack.encode(old)) == {
        "seats": {"u1": Seat(1, "ACD", "t", "c", T0, False, True)}}
