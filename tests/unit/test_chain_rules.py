"""The ledger's side of chaining: deciding without recording, and recording the upstream's
refusal (issue 14, section 1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ledger import UPSTREAM_PREFIX, Assessment, Grant, Licence, Refusal

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _licence() -> Licence:
    licence = Licence.issue(NOW, customer="Acme", limits={"PRED": 100, "ACD": 1})
    licence.enrol_site(NOW, "north", "", {"PRED": 1})
    licence.collect_events()
    return licence


def test_assess_records_nothing_and_says_what_acquire_would_do() -> None:
    licence = _licence()
    assert licence.assess(NOW, "north", "u1", "PRED") == Assessment(grant=True)
    assert licence.collect_events() == []
    licence.acquire(NOW, "north", "u1", "PRED")
    licence.collect_events()
    assert licence.assess(NOW, "north", "u1", "PRED") == Assessment(grant=True, repeated=True)
    refused = licence.assess(NOW, "north", "u2", "PRED")
    assert (refused.grant, refused.reason) == (False, "site_limit")
    assert licence.assess(NOW, "nowhere", "u", "PRED").reason == "unknown_site"
    assert licence.collect_events() == []


def test_assess_foresees_overuse() -> None:
    licence = _licence()
    licence.enrol_site(NOW, "south", "", {})
    licence.acquire(NOW, "south", "a1", "ACD")
    assert licence.assess(NOW, "south", "a2", "ACD") == Assessment(grant=True, overuse=True)


def test_an_upstream_refusal_is_recorded_with_the_upstreams_reason() -> None:
    licence = _licence()
    outcome = licence.acquire(NOW, "north", "u1", "PRED", upstream_refusal="limit_enforced",
                              upstream_detail="PRED limit 100 is enforced")
    assert isinstance(outcome, Refusal)
    assert outcome.reason == f"{UPSTREAM_PREFIX}limit_enforced"
    [event] = licence.collect_events()
    assert isinstance(event, Licence.SeatRefused)
    assert (event.reason, event.detail) == ("upstream:limit_enforced", "PRED limit 100 is enforced")
    assert licence.sites["north"].seats == {}


def test_our_own_refusal_wins_over_the_upstreams() -> None:
    licence = _licence()
    licence.acquire(NOW, "north", "u1", "PRED")
    outcome = licence.acquire(NOW, "north", "u2", "PRED", upstream_refusal="limit_enforced")
    assert isinstance(outcome, Refusal) and outcome.reason == "site_limit"


def test_a_repeat_is_the_held_seat_whatever_the_upstream_said() -> None:
    licence = _licence()
    first = licence.acquire(NOW, "north", "u1", "PRED")
    again = licence.acquire(NOW, "north", "u1", "PRED", upstream_refusal="site_limit")
    assert isinstance(first, Grant) and isinstance(again, Grant)
    assert again.repeated and again.seat == first.seat


def test_the_upstream_link_is_recorded_once_and_again_when_it_changes() -> None:
    licence = _licence()
    assert licence.link_upstream(NOW, "top", "mid", "ab" * 32)
    assert not licence.link_upstream(NOW + timedelta(hours=1), "top", "mid", "ab" * 32)
    assert licence.link_upstream(NOW, "other", "mid", "ab" * 32)
    events = [e for e in licence.collect_events() if isinstance(e, Licence.UpstreamLinked)]
    assert [(e.upstream, e.site) for e in events] == [("top", "mid"), ("other", "mid")]
    assert licence.upstream == ("other", "mid", "ab" * 32)
