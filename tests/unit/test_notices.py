"""Abuse-notice texts come from one module, and a grant that opens grace carries its notice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ledger import Grant, Licence, Notice, Severity, SyncResult, grace_opened_text
from ledger.domain import notices
from ledger.domain.outcomes import OfflineEvent

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)


def test_grace_opened_text_names_pool_count_limit_and_deadline() -> None:
    text = grace_opened_text("PRED", 101, 100, datetime(2026, 3, 4, 8, 0, tzinfo=UTC))
    assert text == "PRED over-use: 101 in use, limit 100; grace until 2026-03-04 08:00Z"


def test_grace_ending_text_rounds_the_time_left_to_hours() -> None:
    text = notices.grace_ending_text("ACD", 22, 20, T0 + 48 * H, timedelta(hours=3, minutes=59))
    assert text == "ACD over-use grace ends 2026-03-04 08:00Z (4h left): 22 in use, limit 20"


def test_grace_ending_text_never_shows_negative_time() -> None:
    assert "(0h left)" in notices.grace_ending_text("ACD", 22, 20, T0, -H)


def test_grace_expired_text_says_whether_the_limit_bites() -> None:
    assert notices.grace_expired_text("PRED", 101, 100, True) == (
        "PRED grace expired: limit 100 now enforced (101 in use; new seats refused)")
    assert notices.grace_expired_text("PRED", 90, 100, False) == (
        "PRED grace expired: limit 100 now enforced")


def opened_licence() -> tuple[Licence, Grant]:
    lic = Licence.issue(T0, customer="Acme", limits={"PRED": 100, "ACD": 20})
    lic.enrol_site(T0, "north")
    for i in range(100):
        lic.acquire(T0, "north", f"u{i}", "PRED")
    grant = lic.acquire(T0 + H, "north", "x", "PRED")
    assert isinstance(grant, Grant)
    return lic, grant


def test_a_grant_that_opens_grace_carries_the_recorded_notice() -> None:
    lic, grant = opened_licence()
    deadline = T0 + 49 * H
    expected = Notice("PRED", Severity.OPENED, deadline,
                      "PRED over-use: 101 in use, limit 100; grace until 2026-03-04 09:00Z")
    assert grant.notices == (expected,)
    recorded = [e for e in lic.collect_events() if type(e) is Licence.AbuseNoticeIssued]
    assert [(e.pool, e.severity, e.deadline, e.detail) for e in recorded] == [
        (expected.pool, expected.severity, expected.deadline, expected.detail)]


def test_a_grant_within_an_open_window_carries_no_notice() -> None:
    lic, _ = opened_licence()
    later = lic.acquire(T0 + 2 * H, "north", "y", "PRED")
    assert isinstance(later, Grant) and later.overuse and later.notices == ()


def test_a_sync_whose_offline_overuse_opens_grace_returns_the_notice() -> None:
    lic = Licence.issue(T0, customer="Acme", limits={"PRED": 100, "ACD": 20})
    lic.enrol_site(T0, "north")
    lic.connect_site(T0, "north")
    for i in range(20):
        lic.acquire(T0, "north", f"a{i}", "ACD")
    lic.disconnect_site(T0, "north")
    offline = [OfflineEvent(1, "grant", "late", "ACD", T0 + H)]
    result = lic.sync(T0 + 2 * H, "north", offline, [])
    assert isinstance(result, SyncResult)
    assert [(n.pool, n.severity, n.deadline) for n in result.notices] == [
        ("ACD", Severity.OPENED, T0 + 49 * H)]
