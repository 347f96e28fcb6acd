"""An operator releases seats at a site (``seatledger site release``): one user's or every
seat there, reason ``operator``, all or nothing; and what ``site seats`` shows."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ledger import Licence, ReleaseReason, UnknownSeatError, UnknownSiteError
from ledger.domain.summaries import seats_summary
from tests.unit.test_cut_off_seats import CUT, T0, cut_off_east, released


def test_one_users_seat_is_released_with_reason_operator() -> None:
    lic = cut_off_east()
    [release] = lic.release_seats(CUT, "east", ["e3"])
    assert (release.site, release.user, release.reason) == ("east", "e3", ReleaseReason.OPERATOR)
    assert released(lic) == [("e3", ReleaseReason.OPERATOR)]
    assert "e3" not in lic.sites["east"].seats and lic.pools["PRED"].in_use == 99


def test_every_seat_of_a_dead_site_is_released() -> None:
    lic = cut_off_east()
    releases = lic.release_seats(CUT, "east")
    assert sorted(r.user for r in releases) == [f"e{i}" for i in range(5)]
    assert sorted(released(lic)) == [(f"e{i}", ReleaseReason.OPERATOR) for i in range(5)]
    assert lic.sites["east"].seats == {} and lic.pools["PRED"].in_use == 95
    assert lic.sites["east"].status == "cut_off"  # released, not revoked: it may come back
    assert lic.release_seats(CUT, "east") == []  # nothing left: nothing recorded
    assert released(lic) == []


def test_a_user_holding_no_seat_there_is_refused_and_nothing_is_recorded() -> None:
    lic = cut_off_east()
    with pytest.raises(UnknownSeatError, match="'w1' holds no seat at site 'east'"):
        lic.release_seats(CUT, "east", ["e0", "w1"])  # w1 sits at west
    assert lic.collect_events() == []
    assert len(lic.sites["east"].seats) == 5


def test_an_unknown_site_is_refused() -> None:
    lic = cut_off_east()
    with pytest.raises(UnknownSiteError, match="'nowhere' is not enrolled"):
        lic.release_seats(CUT, "nowhere")
    assert lic.collect_events() == []


def test_the_freed_seat_no_longer_takes_the_licence_over_its_limit() -> None:
    lic = cut_off_east()
    lic.release_seats(CUT, "east", ["e0"])
    grant = lic.acquire(CUT, "west", "now-fits", "PRED")
    assert not grant.overuse  # type: ignore[union-attr]


def test_the_seats_summary_lists_who_holds_which_seat_since_when() -> None:
    lic = Licence.issue(T0, customer="Acme", limits={"PRED": 100, "ACD": 1})
    lic.enrol_site(T0, "north")
    lic.connect_site(T0, "north")
    lic.acquire(T0, "north", "zoe", "PRED", tenant="acme", campaign="spring")
    lic.acquire(T0 + timedelta(minutes=1), "north", "adam", "ACD")
    lic.acquire(T0, "north", "p2", "PRED")
    lic.acquire(T0, "north", "a2", "ACD")  # over the ACD limit: grace
    summary = seats_summary(lic, "north")
    assert (summary["site"], summary["state"], summary["since"]) == (
        "north", "connected", T0.isoformat())
    assert [s["user"] for s in summary["seats"]] == ["zoe", "adam", "p2", "a2"]  # seat order
    zoe, adam = summary["seats"][:2]
    assert zoe == {"user": "zoe", "agent_class": "PRED", "seat": zoe["seat"], "tenant": "acme",
                   "campaign": "spring", "since": "2026-03-02T08:00:00+00:00",
                   "overuse": False, "offline": False}
    assert adam["since"] == "2026-03-02T08:01:00+00:00" and adam["seat"] > zoe["seat"]
    assert summary["seats"][3]["overuse"] is True
    lic.disconnect_site(T0 + timedelta(minutes=2), "north")
    assert seats_summary(lic, "north")["state"] == "disconnected"
    with pytest.raises(UnknownSiteError):
        seats_summary(lic, "south")
