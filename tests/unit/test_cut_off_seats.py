"""A cut-off site's seats stay counted at the master (DESIGN.md section 3, "Site limits and
connection loss") until the site reconnects and syncs, an operator releases them, or the
site is revoked: a site that merely goes quiet frees no seats for others."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ledger import HeldSeat, Licence, OfflineEvent, RefusalReason, ReleaseReason

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
CUT = T0 + timedelta(hours=1, minutes=15)


def cut_off_east(seats: int = 5) -> Licence:
    """PRED 100; east holds ``seats``, west 100 - ``seats``; east is cut off at CUT."""
    lic = Licence.issue(T0, customer="Acme", limits={"PRED": 100})
    for site in ("east", "west"):
        lic.enrol_site(T0, site)
        lic.connect_site(T0, site)
    for i in range(seats):
        lic.acquire(T0, "east", f"e{i}", "PRED")
    for i in range(100 - seats):
        lic.acquire(T0, "west", f"w{i}", "PRED")
    lic.tick(T0 + timedelta(hours=48, minutes=1))  # nothing over: no window
    lic.disconnect_site(T0 + timedelta(hours=1), "east")
    lic.tick(CUT)
    lic.collect_events()
    return lic


def released(lic: Licence) -> list[tuple[str, str]]:
    return [(e.user, e.reason) for e in lic.collect_events()
            if type(e).__name__ == "SeatReleased"]


def test_a_cut_off_site_frees_no_seats_for_others() -> None:
    lic = cut_off_east()
    assert lic.sites["east"].status == "cut_off"
    assert lic.pools["PRED"].in_use == 100
    # West takes the licence over its limit: the grace window opens, as it would if east's
    # seats were still in use (they are, as far as the master knows).
    grant = lic.acquire(CUT, "west", "extra", "PRED")
    assert grant.overuse  # type: ignore[union-attr]


def test_reconnecting_and_syncing_reconciles_the_seats_the_site_no_longer_holds() -> None:
    lic = cut_off_east()
    later = CUT + timedelta(hours=2)
    lic.connect_site(later, "east")
    result = lic.sync(later, "east", [], [HeldSeat("e0", "PRED"), HeldSeat("e1", "PRED")])
    assert result.reconciled == 3
    assert released(lic) == [(f"e{i}", ReleaseReason.RECONCILED) for i in (2, 3, 4)]
    assert lic.pools["PRED"].in_use == 97


def test_releases_the_site_journalled_at_cut_off_are_applied_with_their_reason() -> None:
    lic = cut_off_east(2)
    later = CUT + timedelta(hours=2)
    events = [OfflineEvent(1, "release", "e0", "PRED", CUT, reason="site_cut_off"),
              OfflineEvent(2, "release", "e1", "PRED", CUT, reason="site_cut_off")]
    lic.sync(later, "east", events, [])
    assert released(lic) == [("e0", "site_cut_off"), ("e1", "site_cut_off")]
    assert lic.pools["PRED"].in_use == 98


def test_an_operator_release_frees_a_cut_off_sites_seat() -> None:
    lic = cut_off_east()
    lic.release(CUT, "east", "e0", ReleaseReason.OPERATOR)
    assert released(lic) == [("e0", ReleaseReason.OPERATOR)]
    assert not lic.acquire(CUT, "west", "now-fits", "PRED").overuse  # type: ignore[union-attr]


def test_revoking_a_cut_off_site_releases_its_seats() -> None:
    lic = cut_off_east()
    lic.revoke_site(CUT, "east")
    assert released(lic) == [(f"e{i}", ReleaseReason.OPERATOR) for i in range(5)]
    assert lic.pools["PRED"].in_use == 95


def test_under_enforcement_a_cut_off_sites_seats_still_count() -> None:
    lic = cut_off_east()
    lic.acquire(CUT, "west", "extra", "PRED")
    lic.tick(CUT + timedelta(hours=48))
    refusal = lic.acquire(CUT + timedelta(hours=49), "west", "late", "PRED")
    assert refusal.reason == RefusalReason.LIMIT_ENFORCED  # type: ignore[union-attr]
