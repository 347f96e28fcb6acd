"""Hours licences (ledger.domain.hours): a class's agent-hours count down while its seats are
held, exactly, with notices at 20, 10 and 5 % left, refusal at zero, top-ups by newly
installed licences, and offline use synced later recorded as overdrawn."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledger import (
    HeldSeat,
    Licence,
    LicenceError,
    LicenceTooSmallError,
    OfflineEvent,
    RefusalReason,
    Severity,
)
from ledger.domain.hours import US_PER_HOUR
from ledger.domain.terms import ExportObligation, LicenceTerms

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)
KEY = "sha256:" + "ab" * 32


def hours_licence(pred_hours: int = 100, **kwargs: object) -> Licence:
    """PRED 100 concurrent with ``pred_hours`` agent-hours; ACD by hours alone (50)."""
    lic = Licence.issue(T0, customer="Acme", limits={"PRED": 100},
                        hours={"PRED": pred_hours, "ACD": 50}, **kwargs)  # type: ignore[arg-type]
    for site in ("north", "south"):
        lic.enrol_site(T0, site)
        lic.connect_site(T0, site)
    lic.collect_events()
    return lic


def left_hours(lic: Licence, at: datetime, cls: str = "PRED") -> float:
    left = lic.hours_left(cls, at)
    assert left is not None
    return left / US_PER_HOUR


def names(lic: Licence) -> list[str]:
    return [type(e).__name__ for e in lic.collect_events()]


def run_timer(lic: Licence, until: datetime) -> list[tuple[datetime, str]]:
    """What the master's timer does with no traffic: tick at each next_due up to ``until``."""
    fired = []
    while (due := lic.next_due()) is not None and due <= until:
        for n in lic.tick(due):
            fired.append((due, n.detail))
    return fired


def test_hours_count_down_exactly_over_grants_and_releases() -> None:
    lic = hours_licence()
    lic.acquire(T0, "north", "a", "PRED")  # 1 seat from 08:00
    lic.acquire(T0 + H, "south", "b", "PRED")  # 2 seats from 09:00
    lic.release(T0 + 2 * H + timedelta(seconds=1, microseconds=7), "north", "a")
    lic.acquire(T0 + 3 * H, "north", "c", "ACD")  # ACD is counted on its own
    # a: 2h 0.000001007s, b: 1h so far at 10:00:00.000007... then up to 12:00
    at = T0 + 4 * H
    used_us = (2 * US_PER_HOUR + 1_000_007) + 3 * US_PER_HOUR
    assert lic.hours_left("PRED", at) == 100 * US_PER_HOUR - used_us
    assert lic.hours_left("ACD", at) == 50 * US_PER_HOUR - US_PER_HOUR
    assert lic.hours_left("VIR", at) is None


def test_notices_at_20_10_and_5_percent_left_fire_from_the_timer_without_traffic() -> None:
    lic = hours_licence(pred_hours=100)
    for i in range(10):
        lic.acquire(T0, "north", f"u{i}", "PRED")  # 10 seats: 10 agent-hours per hour
    lic.collect_events()
    assert lic.next_due() == T0 + 8 * H  # 80 of 100 used: 20 % left
    fired = run_timer(lic, T0 + 20 * H)
    assert [at for at, _ in fired] == [T0 + 8 * H, T0 + 9 * H, T0 + 9.5 * H, T0 + 10 * H]
    assert "at most 20 agent-hours left (20 %) after 80 used" in fired[0][1]
    events = lic.collect_events()
    assert [type(e).__name__ for e in events] == ["HoursNoticeIssued"] * 3 + ["HoursExhausted"]
    assert [e.percent for e in events[:3]] == [20, 10, 5]  # type: ignore[attr-defined]
    assert [e.occurred_at for e in events] == [T0 + 8 * H, T0 + 9 * H, T0 + 9.5 * H, T0 + 10 * H]
    assert lic.next_due() is None or lic.next_due() > T0 + 20 * H  # type: ignore[operator]


def test_a_late_tick_sends_only_the_most_severe_notice_due() -> None:
    lic = hours_licence(pred_hours=100)
    for i in range(10):
        lic.acquire(T0, "north", f"u{i}", "PRED")
    notices = lic.tick(T0 + 9 * H + timedelta(minutes=45))  # 2.5 % left
    assert [(n.pool, n.kind, n.severity) for n in notices] == [
        ("PRED", "hours", Severity.HOURS_LEFT)]
    assert [e.occurred_at for e in lic.collect_events() if type(e).__name__ == "HoursNoticeIssued"] == [
        T0 + 9.5 * H]


def test_at_zero_new_seats_are_refused_and_held_seats_are_kept() -> None:
    lic = hours_licence(pred_hours=100)
    for i in range(10):
        lic.acquire(T0, "north", f"u{i}", "PRED")
    run_timer(lic, T0 + 10 * H)
    lic.collect_events()
    refusal = lic.acquire(T0 + 10 * H, "south", "late", "PRED")
    assert refusal.reason == RefusalReason.HOURS_EXHAUSTED  # type: ignore[union-attr]
    assert "PRED hours licence used up (100 agent-hours used)" in refusal.detail  # type: ignore[union-attr]
    assert names(lic) == ["SeatRefused"]
    assert len(lic.sites["north"].seats) == 10
    # a repeat for a seated user is still its seat; another class is not affected
    assert not lic.acquire(T0 + 10 * H, "north", "u0", "PRED").overuse  # type: ignore[union-attr]
    assert lic.acquire(T0 + 10 * H, "south", "acd", "ACD").agent_class == "ACD"  # type: ignore[union-attr]
    # the seats held keep burning: the balance goes below zero
    assert left_hours(lic, T0 + 11 * H) == pytest.approx(-10.0)


def test_refusal_is_decided_on_the_balance_even_before_the_timer_records_it() -> None:
    lic = hours_licence(pred_hours=100)
    for i in range(10):
        lic.acquire(T0, "north", f"u{i}", "PRED")
    refusal = lic.acquire(T0 + 10 * H, "south", "late", "PRED")
    assert refusal.reason == RefusalReason.HOURS_EXHAUSTED  # type: ignore[union-attr]


def test_an_hours_only_class_needs_no_concurrent_limit_and_counts_nothing_towards_100() -> None:
    lic = hours_licence()
    assert "ACD" not in lic.pools
    for i in range(150):  # no concurrent limit: only hours bound it
        assert not lic.acquire(T0, "north", f"a{i}", "ACD").overuse  # type: ignore[union-attr]
    with pytest.raises(LicenceTooSmallError):
        Licence.issue(T0, customer="Tiny", limits={"PRED": 10}, hours={"ACD": 5000})
    with pytest.raises(LicenceError, match="hours"):
        Licence.issue(T0, customer="Bad", limits={"PRED": 100}, hours={"PRED": 0})


def terms(serial: int, hours: dict[str, int], issued: datetime = T0) -> LicenceTerms:
    return LicenceTerms(customer="Acme", licence_id=f"ACME-{serial:04d}", serial=serial,
                        issued_at=issued, expires_at=issued + timedelta(days=300),
                        limits={"PRED": 100}, master_origin="m", master_key=KEY,
                        export=ExportObligation(("age1x",)), hours=hours)


def install(lic: Licence, now: datetime, t: LicenceTerms) -> None:
    assert lic.install(now, t, licence_file=f"file {t.serial}", sha256=f"{t.serial:064d}",
                       issuer="vendor", master_key=KEY)


def test_a_newly_installed_licence_adds_its_hours_to_what_is_left() -> None:
    lic = Licence.start_trial(T0)
    install(lic, T0, terms(1, {"PRED": 100}))
    lic.enrol_site(T0, "north")
    for i in range(10):
        lic.acquire(T0, "north", f"u{i}", "PRED")
    run_timer(lic, T0 + 10 * H)
    lic.collect_events()
    assert lic.acquire(T0 + 10 * H, "north", "x", "PRED").reason == "hours_exhausted"  # type: ignore[union-attr]
    # renewed an hour later: 10 agent-hours overdrawn meanwhile, 200 added
    install(lic, T0 + 11 * H, terms(2, {"PRED": 200}, T0 + 11 * H))
    assert left_hours(lic, T0 + 11 * H) == pytest.approx(190.0)
    assert not lic.acquire(T0 + 11 * H, "north", "x", "PRED").overuse  # type: ignore[union-attr]
    # notices start over from the new balance (190 with 11 seats: 20 % is 38 left)
    lic.collect_events()
    fired = run_timer(lic, T0 + 40 * H)
    assert [p for p in (e.percent for e in lic.collect_events()  # type: ignore[attr-defined]
                        if type(e).__name__ == "HoursNoticeIssued")] == [20, 10, 5]
    # the instant it is reached, rounded up to the microsecond
    assert fired[0][0] == T0 + 11 * H + timedelta(microseconds=-(-152 * US_PER_HOUR // 11))
    # an identical licence file installs nothing and adds nothing
    assert not lic.install(T0 + 12 * H, terms(2, {"PRED": 200}, T0 + 11 * H),
                           licence_file="file 2", sha256=f"{2:064d}", issuer="vendor",
                           master_key=KEY)


def test_a_cut_off_sites_seats_keep_burning_hours() -> None:
    lic = hours_licence(pred_hours=100)
    for i in range(4):
        lic.acquire(T0, "north", f"u{i}", "PRED")
    lic.disconnect_site(T0 + H, "north")
    lic.tick(T0 + H + timedelta(minutes=15))
    assert lic.sites["north"].status == "cut_off"
    assert left_hours(lic, T0 + 5 * H) == pytest.approx(100 - 4 * 5)
    assert lic.next_due() == T0 + 20 * H  # 80 used by 4 seats: 20 % left


def test_offline_use_synced_later_is_charged_and_recorded_as_overdrawn() -> None:
    lic = hours_licence(pred_hours=10)
    # north, offline from 08:00: three seats granted at 08:00, one released at 10:00
    journal = [OfflineEvent(i + 1, "grant", f"o{i}", "PRED", T0) for i in range(3)]
    journal.append(OfflineEvent(4, "release", "o0", "PRED", T0 + 2 * H))
    held = [HeldSeat("o1", "PRED"), HeldSeat("o2", "PRED")]
    result = lic.sync(T0 + 6 * H, "north", journal, held)
    assert result.applied == 4
    events = lic.collect_events()
    charged = [e for e in events if type(e).__name__ == "HoursCharged"]
    assert [(e.agent_class, e.charge_us) for e in charged] == [  # type: ignore[attr-defined]
        ("PRED", (2 + 6 + 6) * US_PER_HOUR)]
    (overdrawn,) = [e for e in events if type(e).__name__ == "HoursOverdrawn"]
    assert overdrawn.left_us == -4 * US_PER_HOUR  # type: ignore[attr-defined]
    assert overdrawn.site == "north"  # type: ignore[attr-defined]
    assert "4.00 agent-hours overdrawn" in overdrawn.detail  # type: ignore[attr-defined]
    # never revoked; new grants see zero
    assert set(lic.sites["north"].seats) == {"o1", "o2"}
    refusal = lic.acquire(T0 + 6 * H, "south", "new", "PRED")
    assert refusal.reason == RefusalReason.HOURS_EXHAUSTED  # type: ignore[union-attr]
    # redelivering the journal charges nothing twice
    lic.sync(T0 + 7 * H, "north", journal, held)
    assert "HoursCharged" not in names(lic)


def test_offline_use_within_the_balance_is_charged_without_overdraw() -> None:
    lic = hours_licence(pred_hours=100)
    lic.sync(T0 + 3 * H, "north", [OfflineEvent(1, "grant", "o", "PRED", T0 + H)],
             [HeldSeat("o", "PRED")])
    assert names(lic).count("HoursOverdrawn") == 0
    assert left_hours(lic, T0 + 3 * H) == pytest.approx(98.0)
    assert left_hours(lic, T0 + 4 * H) == pytest.approx(97.0)


def test_replaying_the_events_rebuilds_the_same_balances() -> None:
    lic = Licence.issue(T0, customer="Acme", limits={"PRED": 100}, hours={"PRED": 20})
    lic.enrol_site(T0, "north")
    lic.enrol_site(T0, "south")
    for i in range(3):
        lic.acquire(T0 + i * H, "north", f"u{i}", "PRED")
    lic.release(T0 + 4 * H + timedelta(microseconds=3), "north", "u0")
    lic.sync(T0 + 5 * H, "south", [OfflineEvent(1, "grant", "o", "PRED", T0)],
             [HeldSeat("o", "PRED")])
    run_timer(lic, T0 + 30 * H)
    events = lic.collect_events()
    rebuilt = events[0].mutate(None)
    for e in events[1:]:
        e.mutate(rebuilt)
    assert rebuilt.hours_balances == lic.hours_balances
    assert lic.hours_balances is not None and lic.hours_balances["PRED"].exhausted


def test_a_top_up_smaller_than_the_overdraft_leaves_the_class_refused() -> None:
    lic = Licence.start_trial(T0)
    install(lic, T0, terms(1, {"PRED": 10}))
    lic.enrol_site(T0, "north")
    for i in range(10):
        lic.acquire(T0, "north", f"u{i}", "PRED")
    run_timer(lic, T0 + 3 * H)  # exhausted at 09:00, 20 overdrawn by 11:00
    install(lic, T0 + 3 * H, terms(2, {"PRED": 10}, T0 + 3 * H))
    assert left_hours(lic, T0 + 3 * H) == pytest.approx(-10.0)
    lic.collect_events()
    assert lic.next_due() == T0 + 3 * H
    lic.tick(T0 + 3 * H)
    assert names(lic) == ["HoursExhausted"]  # no percentage notices of a negative balance
    refusal = lic.acquire(T0 + 3 * H, "north", "x", "PRED")
    assert refusal.reason == RefusalReason.HOURS_EXHAUSTED  # type: ignore[union-attr]
