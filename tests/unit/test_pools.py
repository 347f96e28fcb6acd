"""The pool-state transition: each kind of event on its own, and the aggregate and the
live-status projection agreeing because both go through it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest
from eventsourcing.domain import CanMutateAggregate
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.domain.licence import Licence
from ledger.domain.pools import (
    Pool,
    PoolEventKind,
    PoolState,
    apply_pool_event,
    pool_limits,
    pool_members,
    within_local_limit,
)
from ledger.domain.values import COMBINED_POOL, GracePolicy, Severity
from projections.live_status import LiveStatusProjection

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)
K = PoolEventKind


def open_pool(**changes: object) -> Pool:
    pool = apply_pool_event(Pool.new("PRED", 100, 101), K.OVERUSE_STARTED, T0,
                            deadline=T0 + 48 * H)
    return attrs.evolve(pool, **changes)  # type: ignore[arg-type]


# ------------------------------------------------------------------ each transition
def test_a_new_pool_counts_its_class_and_has_grace_available() -> None:
    pool = Pool.new("ACD", 20)
    assert (pool.members, pool.limit, pool.in_use, pool.state) == (
        ("ACD",), 20, 0, PoolState.AVAILABLE)


def test_the_combined_pool_counts_pred_and_acd() -> None:
    assert pool_members(COMBINED_POOL) == ("PRED", "ACD")
    assert pool_members("PBX") == ("PBX",)


def test_pool_limits_add_the_combined_pool_only_when_capped() -> None:
    assert pool_limits({"PRED": 100, "ACD": 20}, None) == {"PRED": 100, "ACD": 20}
    assert pool_limits({"PRED": 100, "ACD": 20}, 110) == {"PRED": 100, "ACD": 20,
                                                           COMBINED_POOL: 110}


def test_seat_granted_and_released_move_in_use_by_one() -> None:
    pool = Pool.new("PRED", 100, 5)
    granted = apply_pool_event(pool, K.SEAT_GRANTED, T0)
    assert granted.in_use == 6
    assert apply_pool_event(granted, K.SEAT_RELEASED, T0).in_use == 5
    assert pool.in_use == 5  # the old state is untouched: the transition is pure


def test_seat_events_given_as_plain_strings_count_the_same() -> None:
    pool = Pool.new("PRED", 100, 5)
    assert apply_pool_event(pool, "seat_granted", T0).in_use == 6  # type: ignore[arg-type]


def test_limit_sets_the_limit_and_the_recount_and_keeps_the_window() -> None:
    pool = apply_pool_event(open_pool(), K.LIMIT, T0 + H, limit=150, in_use=120)
    assert (pool.limit, pool.in_use, pool.state, pool.deadline) == (
        150, 120, PoolState.OPEN, T0 + 48 * H)


def test_overuse_started_opens_the_window_and_resets_severity_and_enforcement() -> None:
    spent = attrs.evolve(Pool.new("PRED", 100, 101), state=PoolState.SPENT, severity=4,
                         enforced=True, closed_at=T0 - H)
    pool = apply_pool_event(spent, K.OVERUSE_STARTED, T0, deadline=T0 + 48 * H)
    assert (pool.state, pool.opened_at, pool.deadline, pool.overuse, pool.severity,
            pool.enforced) == (PoolState.OPEN, T0, T0 + 48 * H, True, 0, False)


def test_overuse_started_again_in_an_open_window_keeps_its_opening() -> None:
    pool = apply_pool_event(open_pool(overuse=False, severity=2), K.OVERUSE_STARTED, T0 + 5 * H,
                            deadline=T0 + 48 * H)
    assert (pool.opened_at, pool.severity, pool.overuse) == (T0, 2, True)


def test_overuse_ended_keeps_the_window_open() -> None:
    pool = apply_pool_event(open_pool(), K.OVERUSE_ENDED, T0 + H)
    assert (pool.overuse, pool.state, pool.deadline) == (False, PoolState.OPEN, T0 + 48 * H)


def test_a_notice_raises_severity_and_never_lowers_it() -> None:
    pool = apply_pool_event(open_pool(), K.NOTICE, T0, severity=Severity.HOURS_LEFT)
    assert pool.severity == Severity.HOURS_LEFT
    assert apply_pool_event(pool, K.NOTICE, T0, severity=Severity.OPENED).severity == 3


def test_grace_expired_spends_grace_as_of_the_deadline() -> None:
    pool = apply_pool_event(open_pool(), K.GRACE_EXPIRED, T0 + 50 * H)
    assert (pool.state, pool.closed_at, pool.deadline) == (PoolState.SPENT, T0 + 48 * H, None)


def test_grace_expired_without_a_deadline_closes_when_recorded() -> None:
    pool = apply_pool_event(open_pool(deadline=None), K.GRACE_EXPIRED, T0 + 50 * H)
    assert pool.closed_at == T0 + 50 * H


def test_enforcement_started_marks_the_pool_enforced() -> None:
    pool = apply_pool_event(Pool.new("PRED", 100), K.ENFORCEMENT_STARTED, T0)
    assert pool.enforced is True


def test_grace_rearmed_clears_the_window_but_not_the_count() -> None:
    spent = apply_pool_event(apply_pool_event(open_pool(severity=4), K.GRACE_EXPIRED, T0),
                             K.ENFORCEMENT_STARTED, T0)
    pool = apply_pool_event(spent, K.GRACE_REARMED, T0 + 30 * 24 * H)
    assert pool == Pool.new("PRED", 100, 101)


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="not a pool event kind"):
        apply_pool_event(Pool.new("PRED", 100), "bogus", T0)  # type: ignore[arg-type]


def test_stored_kinds_and_states_keep_their_strings() -> None:
    assert [str(k) for k in PoolEventKind] == [
        "limit", "seat_granted", "seat_released", "overuse_started", "overuse_ended",
        "notice", "grace_expired", "enforcement_started", "grace_rearmed"]
    assert [str(s) for s in PoolState] == ["available", "open", "spent"]


# ------------------------------------------------------------------ local limit
def test_a_site_within_its_local_limit_may_take_one_more() -> None:
    assert within_local_limit({"PRED": 4}, {"PRED": 5}, "PRED") is True


def test_a_site_at_its_local_limit_may_not() -> None:
    assert within_local_limit({"PRED": 5}, {"PRED": 5}, "PRED") is False


def test_a_class_without_a_local_limit_is_not_capped_locally() -> None:
    assert within_local_limit({"ACD": 500}, {"PRED": 5}, "ACD") is True


def test_a_local_limit_of_zero_refuses_the_first_seat() -> None:
    assert within_local_limit({}, {"VIR": 0}, "VIR") is False


# ------------------------------------------------------------------ aggregate and projection
def project(lic: Licence, view: LiveStatusProjection) -> None:
    handlers = view.handlers()
    for nid, event in enumerate(lic.collect_events(), start=1):
        handlers[type(event)](nid, event)


def test_aggregate_and_live_status_agree_through_a_grace_window() -> None:
    lic = Licence.issue(T0, customer="Acme", limits={"PRED": 100, "ACD": 20},
                        total_pred_acd=110)
    lic.enrol_site(T0, "north")
    view = LiveStatusProjection()
    for i in range(112):
        lic.acquire(T0, "north", f"p{i}", "PRED")
    project(lic, view)
    assert view.pools == lic.pools
    assert view.pools["PRED"].state == PoolState.OPEN
    for t in (T0 + 24 * H, T0 + 44 * H, T0 + 48 * H):
        lic.tick(t)
        project(lic, view)
        assert view.pools == lic.pools
    assert lic.pools["PRED"].enforced and lic.pools[COMBINED_POOL].enforced
    for i in range(20):
        lic.release(T0 + 49 * H, "north", f"p{i}")
    lic.amend(T0 + 50 * H, limits={"PRED": 150, "ACD": 20})
    project(lic, view)
    assert view.pools == lic.pools
    assert set(view.pools) == {"PRED", "ACD", COMBINED_POOL}
    assert {n: p.state for n, p in view.pools.items()}["PRED"] == PoolState.AVAILABLE


steps = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), st.integers(0, 29), st.sampled_from(["PRED", "ACD"])),
        st.tuples(st.just("release"), st.integers(0, 29), st.just("")),
        st.tuples(st.just("advance"), st.integers(1, 30), st.just("")),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(steps)
def test_aggregate_and_live_status_agree_on_any_sequence(seq: list[tuple[str, int, str]]) -> None:
    lic = Licence.issue(T0, customer="Acme", limits={"PRED": 8, "ACD": 4}, total_pred_acd=10,
                        policy=GracePolicy(grace_seconds=20 * 3600, rearm_seconds=40 * 3600),
                        master_slave=False)
    lic.enrol_site(T0, "north")
    view = LiveStatusProjection()
    now = T0
    for op, n, cls in seq:
        if op == "acquire":
            lic.acquire(now, "north", f"u{n}", cls)
        elif op == "release" and f"u{n}" in lic.sites["north"].seats:
            lic.release(now, "north", f"u{n}")
        elif op == "advance":
            now += n * H
            lic.tick(now)
        project(lic, view)
        assert view.pools == lic.pools


def test_only_the_first_event_has_a_mutate_of_its_own() -> None:
    """Licence._emit and apply_events apply an event without the library's mutate(): right
    only while no later event class overrides it, and while seat events read no pool."""
    classes = {n: v for n, v in vars(Licence).items()
               if isinstance(v, type) and issubclass(v, CanMutateAggregate)}
    own = {n for n, v in classes.items() if v.mutate is not CanMutateAggregate.mutate}
    assert own == {"LicenceIssued", "TrialStarted", "Created"}
    assert {n for n, v in classes.items() if getattr(v, "counts_seats_only", False)} == {
        "SeatGranted", "SeatReleased"}
