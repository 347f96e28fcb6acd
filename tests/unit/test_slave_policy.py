"""The slave's offline rules (seatledger.slave.policy), pure: no I/O, time passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seatledger.slave.policy import (
    AlertSeverity,
    OfflineGrant,
    OfflinePolicy,
    OfflineRefusal,
    OfflineRules,
    RefusalReason,
    Remembered,
    SeatStatus,
    SlaveState,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
RULES = OfflineRules(cutoff_attempts=3, demo_limit=5, journal_cap=100, retry_interval=300,
                     cutoff_retry=900)
LIMITS = {"PRED": 2, "ACD": 1}


def online(limits: dict[str, int] | None = None) -> OfflinePolicy:
    policy = OfflinePolicy(RULES)
    policy.synced(LIMITS if limits is None else limits, T0, 0, 0)
    return policy


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def fail_rounds(policy: OfflinePolicy, count: int) -> list[bool]:
    """``count`` failed rounds, five minutes apart; whether each cut the slave off."""
    return [policy.round_failed(at(5 * i)).cut_off for i in range(count)]


# --- states ---------------------------------------------------------------------------------


def test_states_store_as_todays_strings() -> None:
    assert [str(s) for s in SlaveState] == ["online", "connecting", "offline", "cut_off"]
    assert SlaveState("cut_off") is SlaveState.CUT_OFF


def test_a_new_slave_is_connecting_and_goes_online_when_synced() -> None:
    policy = OfflinePolicy(RULES)
    assert policy.state is SlaveState.CONNECTING
    assert policy.synced(LIMITS, T0, 0, 0) == ()  # no "reachable again" on a first connection
    assert policy.state is SlaveState.ONLINE and policy.limits == LIMITS


def test_losing_the_link_goes_offline_with_a_warning() -> None:
    policy = online()
    (alert,) = policy.link_lost(T0)
    assert policy.state is SlaveState.OFFLINE
    assert alert.severity is AlertSeverity.WARNING and "lost the master" in alert.text


def test_a_first_failed_round_at_start_goes_offline_with_a_warning() -> None:
    policy = OfflinePolicy(RULES, Remembered(LIMITS))
    result = policy.round_failed(T0)
    assert policy.state is SlaveState.OFFLINE and not result.cut_off
    assert [a.severity for a in result.alerts] == [AlertSeverity.WARNING]


def test_reconnecting_after_an_outage_says_so_and_resets_the_count() -> None:
    policy = online()
    policy.link_lost(T0)
    fail_rounds(policy, 3)
    assert policy.failed_rounds == 2
    (alert,) = policy.synced(LIMITS, at(20), 4, 1)
    assert alert.severity is AlertSeverity.INFO and "4 applied, 1 already known" in alert.text
    assert policy.state is SlaveState.ONLINE and policy.failed_rounds == 0
    assert policy.remembered() == Remembered(LIMITS, 0, False, False)


# --- cut-off --------------------------------------------------------------------------------


def test_cut_off_after_the_configured_failed_rounds_not_counting_the_first() -> None:
    policy = online()
    policy.link_lost(T0)
    # Round 1 finds the master gone (not counted), rounds 2-4 count: cut off at the 4th,
    # 15 minutes after the first.
    assert fail_rounds(policy, 4) == [False, False, False, True]
    assert policy.state is SlaveState.CUT_OFF


def test_cut_off_happens_once_with_a_critical_alert() -> None:
    policy = online()
    policy.link_lost(T0)
    fail_rounds(policy, 3)
    result = policy.round_failed(at(15))
    assert result.cut_off
    assert [a.severity for a in result.alerts] == [AlertSeverity.CRITICAL]
    assert "demo limit of 5 agents" in result.alerts[0].text
    later = policy.round_failed(at(30))
    assert not later.cut_off and later.alerts == ()


def test_a_site_without_local_limits_is_cut_off_at_the_first_failed_round() -> None:
    policy = online(limits={})
    policy.link_lost(T0)
    assert policy.round_failed(T0).cut_off
    assert policy.state is SlaveState.CUT_OFF


def test_retries_come_less_often_once_cut_off() -> None:
    policy = online()
    assert policy.retry_delay == 300
    policy.link_lost(T0)
    fail_rounds(policy, 4)
    assert policy.retry_delay == 900


# --- restarts -------------------------------------------------------------------------------


def test_a_slave_restarted_during_an_outage_remembers_its_limits_and_is_not_cut_off() -> None:
    before = online()
    before.link_lost(T0)
    before.round_failed(T0)
    restarted = OfflinePolicy(RULES, before.remembered())
    result = restarted.round_failed(at(1))
    assert not result.cut_off and restarted.state is SlaveState.OFFLINE
    assert restarted.limits == LIMITS
    assert isinstance(restarted.decide("PRED", {}, 0), OfflineGrant)


def test_a_restart_does_not_start_the_count_afresh() -> None:
    before = online()
    before.link_lost(T0)
    fail_rounds(before, 3)  # two counted
    restarted = OfflinePolicy(RULES, before.remembered())
    # The first round after a restart during an outage counts: the third, cut off.
    assert restarted.round_failed(at(15)).cut_off


def test_a_slave_restarted_while_cut_off_stays_cut_off_without_dropping_seats_again() -> None:
    before = online()
    before.link_lost(T0)
    fail_rounds(before, 4)
    restarted = OfflinePolicy(RULES, before.remembered())
    assert restarted.state is SlaveState.CUT_OFF
    assert restarted.decide("PRED", {}, 0) == OfflineGrant(SeatStatus.DEMO)
    assert not restarted.round_failed(at(30)).cut_off


# --- log-ons while offline ------------------------------------------------------------------


def test_offline_log_ons_are_granted_up_to_the_local_limit_per_class() -> None:
    policy = online()
    policy.link_lost(T0)
    assert policy.decide("PRED", {"PRED": 1, "ACD": 1}, 0) == OfflineGrant(SeatStatus.OFFLINE)
    refusal = policy.decide("PRED", {"PRED": 2}, 0)
    assert isinstance(refusal, OfflineRefusal)
    assert refusal.reason is RefusalReason.SITE_LIMIT and "limit 2" in refusal.detail
    assert policy.decide("ACD", {"PRED": 2}, 0) == OfflineGrant(SeatStatus.OFFLINE)


def test_a_class_without_a_local_limit_is_refused_offline() -> None:
    policy = online()
    policy.link_lost(T0)
    refusal = policy.decide("SUP", {}, 0)
    assert isinstance(refusal, OfflineRefusal) and refusal.reason is RefusalReason.NO_LOCAL_LIMIT


def test_a_new_slave_that_never_reached_a_master_refuses_offline() -> None:
    refusal = OfflinePolicy(RULES).decide("PRED", {}, 0)
    assert isinstance(refusal, OfflineRefusal) and refusal.reason is RefusalReason.NO_LOCAL_LIMIT


def test_after_cut_off_only_the_demo_limit_of_agents_may_log_on() -> None:
    policy = online(limits={"PRED": 50})
    policy.link_lost(T0)
    fail_rounds(policy, 4)
    assert policy.decide("PRED", {"PRED": 4}, 0) == OfflineGrant(SeatStatus.DEMO)
    assert policy.decide("ACD", {"PRED": 4}, 0) == OfflineGrant(SeatStatus.DEMO)
    refusal = policy.decide("PRED", {"PRED": 3, "ACD": 2}, 0)
    assert isinstance(refusal, OfflineRefusal) and refusal.reason is RefusalReason.CUT_OFF
    assert "demo limit of 5" in refusal.detail


@given(held=st.dictionaries(st.sampled_from(["PRED", "ACD", "SUP"]), st.integers(0, 5)),
       cls=st.sampled_from(["PRED", "ACD", "SUP"]))
def test_offline_decisions_match_the_local_limit_rule(held: dict[str, int], cls: str) -> None:
    policy = online()
    policy.link_lost(T0)
    decision = policy.decide(cls, held, 0)
    limit = LIMITS.get(cls)
    if limit is None:
        assert decision == OfflineRefusal(RefusalReason.NO_LOCAL_LIMIT, decision.detail)
    elif held.get(cls, 0) < limit:
        assert decision == OfflineGrant(SeatStatus.OFFLINE)
    else:
        assert isinstance(decision, OfflineRefusal) and decision.reason is RefusalReason.SITE_LIMIT


# --- the journal cap ------------------------------------------------------------------------


def test_journal_alerts_rise_in_severity_once_each() -> None:
    policy = online()
    policy.link_lost(T0)
    seen = [(size, [str(a.severity) for a in policy.journal_grew(size, T0)])
            for size in (49, 50, 51, 80, 94, 95, 99, 100)]
    assert seen == [(49, []), (50, ["warning"]), (51, []), (80, ["high"]), (94, []),
                    (95, ["critical"]), (99, []), (100, ["full"])]


def test_a_jump_past_several_levels_raises_each_of_them() -> None:
    policy = online()
    alerts = policy.journal_grew(96, T0)
    assert [a.severity for a in alerts] == [AlertSeverity.WARNING, AlertSeverity.HIGH,
                                           AlertSeverity.CRITICAL]
    assert alerts[0].text == "offline journal 96% full (96 of 100)"


def test_a_full_journal_refuses_log_ons_even_within_limits_and_when_cut_off() -> None:
    policy = online()
    policy.link_lost(T0)
    refusal = policy.decide("PRED", {}, 100)
    assert isinstance(refusal, OfflineRefusal) and refusal.reason is RefusalReason.JOURNAL_FULL
    fail_rounds(policy, 4)
    refusal = policy.decide("PRED", {}, 100)
    assert isinstance(refusal, OfflineRefusal) and refusal.reason is RefusalReason.JOURNAL_FULL
    assert policy.decide("PRED", {}, 99) == OfflineGrant(SeatStatus.DEMO)


def test_journal_alerts_start_again_after_a_sync() -> None:
    policy = online()
    assert len(policy.journal_grew(60, T0)) == 1
    policy.synced(LIMITS, T0, 60, 0)
    assert [a.severity for a in policy.journal_grew(50, T0)] == [AlertSeverity.WARNING]


@pytest.mark.parametrize("state_after", ["link_lost", "round_failed"])
def test_an_outage_is_remembered(state_after: str) -> None:
    policy = online()
    if state_after == "link_lost":
        policy.link_lost(T0)
    else:
        policy.round_failed(T0)
    assert policy.remembered().outage
