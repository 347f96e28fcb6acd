"""A release a cut-off site made by itself is recorded with reason site_cut_off, a user's own
log-off while offline as logoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ledger.domain.licence import Licence
from ledger.domain.outcomes import OfflineEvent

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _licence_with_two_seats() -> Licence:
    lic = Licence.issue(T0, customer="Acme", limits={"PRED": 100})
    lic.enrol_site(T0, "north", "", {})
    lic.connect_site(T0, "north")
    lic.acquire(T0, "north", "alice", "PRED")
    lic.acquire(T0, "north", "bob", "PRED")
    return lic


def test_offline_releases_keep_the_reason_the_site_gave() -> None:
    lic = _licence_with_two_seats()
    later = T0 + timedelta(hours=1)
    events = (OfflineEvent(1, "release", "alice", "PRED", later, reason="site_cut_off"),
              OfflineEvent(2, "release", "bob", "PRED", later))
    lic.sync(later, "north", events, ())
    reasons = {e.user: e.reason for e in lic.collect_events()
               if type(e).__name__ == "SeatReleased"}
    assert reasons == {"alice": "site_cut_off", "bob": "logoff"}
