"""The licence rules of DESIGN.md section 3, one test per rule, on the aggregate alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledger import (
    GracePolicy,
    HeldSeat,
    Licence,
    LicenceError,
    LicenceTooSmallError,
    OfflineEvent,
    RefusalReason,
    ReleaseReason,
    Severity,
    UnknownSeatError,
    UnknownSiteError,
)
from ledger.domain.grace import AVAILABLE, OPEN, SPENT

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)


def new_licence(limits: dict[str, int] | None = None, **kwargs: object) -> Licence:
    lic = Licence.issue(T0, customer="Acme", limits=limits or {"PRED": 100, "ACD": 20},
                        **kwargs)  # type: ignore[arg-type]
    lic.enrol_site(T0, "north")
    lic.enrol_site(T0, "south")
    lic.collect_events()
    return lic


def fill(lic: Licence, n: int, now: datetime = T0, site: str = "north", cls: str = "PRED",
         prefix: str = "u") -> list[object]:
    return [lic.acquire(now, site, f"{prefix}{i}", cls) for i in range(n)]


def names(lic: Licence) -> list[str]:
    return [type(e).__name__ for e in lic.collect_events()]


def test_grant_that_keeps_in_use_within_limit_is_granted_normally() -> None:
    lic = new_licence()
    outcomes = fill(lic, 100)
    assert all(not o.overuse for o in outcomes)  # type: ignore[attr-defined]
    assert lic.pools["PRED"].in_use == 100
    assert lic.pools["PRED"].state == AVAILABLE
    assert set(names(lic)) == {"SeatGranted"}


def test_grant_over_limit_opens_grace_window_with_deadline_and_notice() -> None:
    lic = new_licence()
    fill(lic, 100)
    lic.collect_events()
    grant = lic.acquire(T0 + H, "south", "x", "PRED")
    assert grant.overuse and grant.deadline == T0 + H + timedelta(hours=48)  # type: ignore[union-attr]
    events = lic.collect_events()
    assert [type(e).__name__ for e in events] == ["OveruseStarted", "AbuseNoticeIssued", "SeatGranted"]
    assert events[0].deadline == T0 + H + timedelta(hours=48)
    assert events[1].severity == Severity.OPENED
    assert events[2].overuse is True
    assert lic.pools["PRED"].state == OPEN


def test_over_limit_grants_while_window_is_open_are_granted() -> None:
    lic = new_licence()
    fill(lic, 130)
    assert lic.pools["PRED"].in_use == 130
    assert names(lic).count("OveruseStarted") == 1


def test_overuse_ceiling_refuses_grants_beyond_the_cap_during_grace() -> None:
    lic = new_licence(policy=GracePolicy(ceiling_percent=110))
    outcomes = fill(lic, 111)
    assert outcomes[109].overuse  # type: ignore[attr-defined]
    assert outcomes[110].reason == RefusalReason.OVERUSE_CEILING  # type: ignore[attr-defined]
    assert lic.pools["PRED"].in_use == 110


def test_dropping_back_under_the_limit_ends_overuse_but_not_the_window() -> None:
    lic = new_licence()
    fill(lic, 102)
    lic.collect_events()
    lic.release(T0 + H, "north", "u0")
    lic.release(T0 + H, "north", "u1")
    assert names(lic) == ["SeatReleased", "SeatReleased", "OveruseEnded"]
    pool = lic.pools["PRED"]
    assert pool.state == OPEN and not pool.overuse and pool.deadline == T0 + timedelta(hours=48)
    again = lic.acquire(T0 + 2 * H, "north", "v1", "PRED")
    again = lic.acquire(T0 + 2 * H, "north", "v2", "PRED")
    assert again.overuse and again.deadline == T0 + timedelta(hours=48)  # type: ignore[union-attr]
    assert names(lic) == ["OveruseStarted", "SeatGranted", "SeatGranted"]


def test_deadline_closes_window_and_enforcement_starts_when_still_over() -> None:
    lic = new_licence()
    fill(lic, 105)
    lic.collect_events()
    notices = lic.tick(T0 + timedelta(hours=48))
    assert names(lic) == ["GraceExpired", "EnforcementStarted", "AbuseNoticeIssued"]
    assert [n.severity for n in notices] == [Severity.EXPIRED]
    assert lic.pools["PRED"].state == SPENT and lic.pools["PRED"].enforced


def test_deadline_closes_window_without_enforcement_when_back_under_limit() -> None:
    lic = new_licence()
    fill(lic, 101)
    lic.release(T0 + H, "north", "u0")
    lic.collect_events()
    lic.tick(T0 + timedelta(hours=49))
    assert names(lic) == ["GraceExpired", "AbuseNoticeIssued"]
    assert lic.pools["PRED"].state == SPENT and not lic.pools["PRED"].enforced


def test_overuse_after_deadline_is_refused_with_limit_enforced() -> None:
    lic = new_licence()
    fill(lic, 101)
    lic.tick(T0 + timedelta(hours=48))
    lic.collect_events()
    refusal = lic.acquire(T0 + timedelta(hours=50), "south", "late", "PRED")
    assert refusal.reason == RefusalReason.LIMIT_ENFORCED  # type: ignore[union-attr]
    assert names(lic) == ["SeatRefused"]
    assert lic.pools["PRED"].in_use == 101


def test_grant_within_limit_after_deadline_is_still_granted() -> None:
    lic = new_licence()
    fill(lic, 101)
    lic.tick(T0 + timedelta(hours=48))
    lic.release(T0 + timedelta(hours=49), "north", "u0")
    lic.release(T0 + timedelta(hours=49), "north", "u1")
    grant = lic.acquire(T0 + timedelta(hours=50), "south", "ok", "PRED")
    assert not grant.overuse  # type: ignore[union-attr]


def test_enforcement_never_revokes_seats_already_held() -> None:
    lic = new_licence()
    fill(lic, 120)
    lic.tick(T0 + timedelta(hours=48))
    assert lic.pools["PRED"].in_use == 120
    assert len(lic.sites["north"].seats) == 120
    assert "SeatReleased" not in names(lic)


def test_new_terms_that_raise_a_limit_rearm_that_pool_only() -> None:
    lic = new_licence()
    fill(lic, 101)
    lic.tick(T0 + timedelta(hours=48))
    lic.collect_events()
    lic.amend(T0 + timedelta(hours=50), limits={"PRED": 110, "ACD": 20})
    assert names(lic) == ["LicenceAmended", "GraceRearmed"]
    assert lic.pools["PRED"].state == AVAILABLE
    for i in range(9):  # 110 in use: at the new limit
        lic.acquire(T0 + timedelta(hours=51), "south", f"more{i}", "PRED")
    grant = lic.acquire(T0 + timedelta(hours=51), "south", "again", "PRED")
    assert grant.overuse and grant.deadline == T0 + timedelta(hours=99)  # type: ignore[union-attr]


@pytest.mark.parametrize("pred", [100, 90])
def test_identical_or_lower_terms_do_not_rearm(pred: int) -> None:
    lic = new_licence()
    fill(lic, 101)
    lic.tick(T0 + timedelta(hours=48))
    lic.collect_events()
    lic.amend(T0 + timedelta(hours=50), limits={"PRED": pred, "ACD": 30})
    assert names(lic) == ["LicenceAmended"]
    assert lic.pools["PRED"].state == SPENT
    refused = lic.acquire(T0 + timedelta(hours=51), "south", "again", "PRED")
    assert refused.reason == RefusalReason.LIMIT_ENFORCED  # type: ignore[union-attr]


def test_grace_rearms_after_the_rearm_period_since_the_window_closed() -> None:
    lic = new_licence(policy=GracePolicy(rearm_seconds=30 * 86400))
    fill(lic, 101)
    lic.tick(T0 + timedelta(hours=48))
    closed = T0 + timedelta(hours=48)
    assert lic.next_due() == closed + timedelta(days=30)
    lic.collect_events()
    lic.tick(closed + timedelta(days=30) - timedelta(seconds=1))
    assert names(lic) == []
    lic.tick(closed + timedelta(days=30))
    assert names(lic) == ["GraceRearmed"]
    assert lic.pools["PRED"].state == AVAILABLE


def test_deadline_fires_without_any_request_when_the_timer_ticks() -> None:
    lic = new_licence()
    fill(lic, 101)
    deadline = T0 + timedelta(hours=48)
    assert lic.next_due() == deadline - timedelta(hours=24)  # the first notice is due first
    for _ in range(3):
        due = lic.next_due()
        assert due is not None
        lic.tick(due)
    assert lic.pools["PRED"].state == SPENT


def test_notices_rise_in_severity_at_24h_and_4h_left_and_at_expiry() -> None:
    lic = new_licence()
    fill(lic, 101)
    deadline = T0 + timedelta(hours=48)
    seen = []
    for at in (deadline - timedelta(hours=30), deadline - timedelta(hours=24),
               deadline - timedelta(hours=10), deadline - timedelta(hours=4), deadline):
        seen += [n.severity for n in lic.tick(at)]
    assert seen == [Severity.DAY_LEFT, Severity.HOURS_LEFT, Severity.EXPIRED]


def test_a_short_grace_period_skips_notices_that_would_predate_the_window() -> None:
    lic = new_licence(policy=GracePolicy(grace_seconds=6 * 3600))
    fill(lic, 101)
    seen = [n.severity for at in range(1, 7) for n in lic.tick(T0 + at * H)]
    assert seen == [Severity.HOURS_LEFT, Severity.EXPIRED]


def test_repeated_grant_for_a_seated_user_returns_the_same_seat_and_records_nothing() -> None:
    lic = new_licence()
    first = lic.acquire(T0, "north", "alice", "PRED")
    lic.collect_events()
    again = lic.acquire(T0 + H, "north", "alice", "PRED")
    assert again.seat == first.seat and again.repeated  # type: ignore[union-attr]
    assert names(lic) == []
    assert lic.pools["PRED"].in_use == 1


def test_releasing_a_seat_nobody_holds_is_a_clear_refusal() -> None:
    lic = new_licence()
    with pytest.raises(UnknownSeatError, match="holds no seat"):
        lic.release(T0, "north", "ghost")
    assert names(lic) == []


def test_a_master_slave_licence_below_100_seats_is_refused() -> None:
    with pytest.raises(LicenceTooSmallError, match="at least 100 seats"):
        Licence.issue(T0, customer="Tiny", limits={"PRED": 60, "ACD": 39})
    with pytest.raises(LicenceTooSmallError):
        Licence.issue(T0, customer="Capped", limits={"PRED": 100, "ACD": 50}, total_pred_acd=90)


def test_a_licence_runs_at_most_one_year() -> None:
    with pytest.raises(LicenceError, match="at most one year"):
        Licence.issue(T0, customer="Acme", limits={"PRED": 100},
                      expires_at=T0 + timedelta(days=400))


def test_site_local_limit_is_checked_at_the_master() -> None:
    lic = Licence.issue(T0, customer="Acme", limits={"PRED": 100})
    lic.enrol_site(T0, "small", local_limits={"PRED": 2})
    outcomes = fill(lic, 3, site="small")
    assert outcomes[2].reason == RefusalReason.SITE_LIMIT  # type: ignore[attr-defined]


def test_combined_pred_acd_cap_counts_both_classes_with_its_own_grace() -> None:
    lic = new_licence({"PRED": 100, "ACD": 50}, total_pred_acd=120)
    fill(lic, 100, cls="PRED")
    fill(lic, 20, cls="ACD", prefix="a")
    assert lic.pools["PRED+ACD"].in_use == 120 and lic.pools["PRED+ACD"].state == AVAILABLE
    grant = lic.acquire(T0, "south", "a99", "ACD")
    assert grant.overuse  # type: ignore[union-attr]
    assert lic.pools["PRED+ACD"].state == OPEN and lic.pools["ACD"].state == AVAILABLE


def test_unlicensed_class_is_refused() -> None:
    lic = new_licence()
    refusal = lic.acquire(T0, "north", "ivr", "VIR")
    assert refusal.reason == RefusalReason.CLASS_NOT_LICENSED  # type: ignore[union-attr]


def test_at_expiry_seats_held_are_kept_and_new_ones_follow_the_trial_rule() -> None:
    lic = new_licence(expires_at=T0 + timedelta(days=10))
    fill(lic, 6)
    lic.collect_events()
    expiry = T0 + timedelta(days=10)
    lic.tick(expiry)
    assert names(lic) == ["LicenceExpired"]
    assert len(lic.sites["north"].seats) == 6
    refusal = lic.acquire(expiry, "north", "new", "PRED")
    assert refusal.reason == RefusalReason.UNLICENSED  # type: ignore[union-attr]
    lic.release(expiry, "north", "u0")
    lic.release(expiry, "north", "u1")
    grant = lic.acquire(expiry, "north", "new", "PRED")  # 5 held now: the trial's most
    assert not grant.overuse  # type: ignore[union-attr]
    refusal = lic.acquire(expiry, "south", "one-more", "ACD")
    assert refusal.reason == RefusalReason.UNLICENSED  # type: ignore[union-attr]


def test_disconnect_keeps_seats_and_cutoff_keeps_them_counted() -> None:
    lic = new_licence()
    lic.connect_site(T0, "north")
    fill(lic, 5)
    lic.disconnect_site(T0 + H, "north")
    lic.tick(T0 + H + timedelta(minutes=14))
    assert lic.pools["PRED"].in_use == 5
    lic.collect_events()
    lic.tick(T0 + H + timedelta(minutes=15))
    assert names(lic) == ["SiteCutOff"]
    assert lic.sites["north"].status == "cut_off"
    assert lic.pools["PRED"].in_use == 5 and len(lic.sites["north"].seats) == 5
    lic.tick(T0 + 10 * H)
    assert names(lic) == []  # nothing more is due for the site: it waits to reconnect


def test_reconnect_before_cutoff_keeps_seats() -> None:
    lic = new_licence()
    lic.connect_site(T0, "north")
    fill(lic, 5)
    lic.disconnect_site(T0 + H, "north")
    lic.connect_site(T0 + H + timedelta(minutes=5), "north")
    lic.collect_events()
    lic.tick(T0 + 2 * H)
    assert names(lic) == []
    assert lic.sites["north"].status == "connected"


def offline(seq: int, kind: str, user: str, at: datetime, cls: str = "PRED") -> OfflineEvent:
    return OfflineEvent(seq, kind, user, cls, at, "t", "c")


def test_sync_applies_offline_events_exactly_once_at_their_original_times() -> None:
    lic = new_licence()
    journal = [offline(1, "grant", "a", T0 + 10 * H), offline(2, "grant", "b", T0 + 11 * H),
               offline(3, "release", "a", T0 + 12 * H)]
    held = [HeldSeat("b", "PRED", "t", "c")]
    first = lic.sync(T0 + 20 * H, "north", journal, held)
    events = lic.collect_events()
    assert (first.applied, first.skipped, first.reconciled) == (3, 0, 0)
    assert [e.occurred_at for e in events] == [T0 + 10 * H, T0 + 11 * H, T0 + 12 * H]
    assert all(e.timestamp == T0 + 20 * H for e in events)
    again = lic.sync(T0 + 21 * H, "north", journal, held)
    assert (again.applied, again.skipped) == (0, 3)
    assert names(lic) == []
    assert set(lic.sites["north"].seats) == {"b"}


def test_sync_reconciles_the_seats_the_site_reports_holding() -> None:
    lic = new_licence()
    fill(lic, 2)  # u0, u1 held at the master
    result = lic.sync(T0 + H, "north", [], [HeldSeat("u1", "PRED"), HeldSeat("z", "PRED")])
    assert result.reconciled == 2
    events = lic.collect_events()
    released = [e for e in events if type(e).__name__ == "SeatReleased"]
    assert [(e.user, e.reason) for e in released] == [("u0", ReleaseReason.RECONCILED)]
    assert set(lic.sites["north"].seats) == {"u1", "z"}


def test_offline_overuse_opens_grace_as_of_when_it_happened() -> None:
    lic = new_licence()
    fill(lic, 100, site="south")
    at = T0 + 5 * H
    lic.sync(T0 + 30 * H, "north", [offline(1, "grant", "over", at)], [HeldSeat("over", "PRED")])
    pool = lic.pools["PRED"]
    assert pool.state == OPEN and pool.deadline == at + timedelta(hours=48)
    seat = lic.sites["north"].seats["over"]
    assert seat.overuse and seat.offline


def test_clock_stepping_back_cannot_extend_grace_or_reorder_history() -> None:
    # Rule 6 / Time: the aggregate takes recorded time; the TimeKeeper keeps it monotonic.
    from ledger.clock import ManualClock, TimeKeeper

    clock = ManualClock(T0 + 10 * H)
    keeper = TimeKeeper(clock)
    recorded, step = keeper.read(T0 + 10 * H)
    assert step is None
    clock.set(T0)  # the wall clock jumps back ten hours
    recorded, step = keeper.read(recorded)
    assert recorded == T0 + 10 * H
    assert step == (T0, T0 + 10 * H)
    clock.advance(hours=1)
    recorded, step = keeper.read(recorded)
    assert recorded == T0 + 10 * H and step is None


def test_a_revoked_site_cannot_sync_seats_back() -> None:
    lic = new_licence()
    fill(lic, 2)
    lic.revoke_site(T0 + H, "north")
    with pytest.raises(UnknownSiteError, match="revoked"):
        lic.sync(T0 + 2 * H, "north", [offline(1, "grant", "x", T0 + H)], [HeldSeat("x", "PRED")])
    assert lic.pools["PRED"].in_use == 0


def test_revoking_releases_the_sites_seats_and_re_enrolling_starts_empty() -> None:
    lic = new_licence()
    fill(lic, 3)
    lic.collect_events()
    lic.revoke_site(T0 + H, "north")
    events = lic.collect_events()
    assert [type(e).__name__ for e in events] == ["SeatReleased"] * 3 + ["SiteRevoked"]
    assert all(e.reason == ReleaseReason.OPERATOR for e in events[:3])
    lic.enrol_site(T0 + 2 * H, "north")
    assert lic.sites["north"].status == "new" and lic.pools["PRED"].in_use == 0
