"""Rules about sites decided once in the ledger: the name, admission, the local limit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ledger import (
    BadSiteNameError,
    Licence,
    LicenceError,
    Refusal,
    RefusalReason,
    SiteState,
    check_site_name,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def new_licence() -> Licence:
    lic = Licence.issue(T0, customer="Acme", limits={"PRED": 100, "ACD": 20})
    lic.enrol_site(T0, "north", "fp-north", {"PRED": 2})
    lic.enrol_site(T0, "open")  # enrolled without a pinned fingerprint
    return lic


# ------------------------------------------------------------------ the site-name rule
@pytest.mark.parametrize("name", ["a", "north", "site-2", "A1", "x" * 63])
def test_dns_labels_are_site_names(name: str) -> None:
    assert check_site_name(name) == name


@pytest.mark.parametrize("name", ["", "-north", "north-", "no rth", "north.eu", "x" * 64,
                                  "nörth", "north\n"])
def test_other_names_are_refused(name: str) -> None:
    with pytest.raises(BadSiteNameError, match="bad site name"):
        check_site_name(name)


def test_a_bad_site_name_is_both_a_licence_error_and_a_value_error() -> None:
    assert issubclass(BadSiteNameError, LicenceError)
    assert issubclass(BadSiteNameError, ValueError)


def test_enrolling_a_site_with_a_bad_name_records_nothing() -> None:
    lic = new_licence()
    lic.collect_events()
    with pytest.raises(BadSiteNameError):
        lic.enrol_site(T0, "no such site")
    assert lic.collect_events() == []


# ------------------------------------------------------------------ admission
def test_an_enrolled_site_with_its_pinned_certificate_is_admitted() -> None:
    assert new_licence().admits("north", "fp-north") is True


def test_another_certificate_for_a_pinned_site_is_not_admitted() -> None:
    assert new_licence().admits("north", "fp-other") is False


def test_a_site_enrolled_without_a_fingerprint_takes_any_certificate() -> None:
    assert new_licence().admits("open", "fp-anything") is True


def test_an_unknown_site_is_not_admitted() -> None:
    assert new_licence().admits("south", "fp-north") is False


def test_a_revoked_site_is_not_admitted() -> None:
    lic = new_licence()
    lic.revoke_site(T0, "north")
    assert lic.sites["north"].status == SiteState.REVOKED
    assert lic.admits("north", "fp-north") is False
    assert lic.admits_certificate("fp-north") is False


def test_the_handshake_admits_only_pinned_certificates_of_unrevoked_sites() -> None:
    lic = new_licence()
    assert lic.admits_certificate("fp-north") is True
    assert lic.admits_certificate("") is False
    assert lic.admits_certificate("fp-unknown") is False


# ------------------------------------------------------------------ local limit and count
def test_the_local_limit_refuses_the_seat_past_it() -> None:
    lic = new_licence()
    lic.acquire(T0, "north", "u1", "PRED")
    lic.acquire(T0, "north", "u2", "PRED")
    refusal = lic.acquire(T0, "north", "u3", "PRED")
    assert isinstance(refusal, Refusal) and refusal.reason == RefusalReason.SITE_LIMIT


def test_a_release_makes_room_under_the_local_limit_again() -> None:
    lic = new_licence()
    lic.acquire(T0, "north", "u1", "PRED")
    lic.acquire(T0, "north", "u2", "PRED")
    lic.release(T0, "north", "u1")
    assert lic.sites["north"].in_use("PRED") == 1
    assert not isinstance(lic.acquire(T0, "north", "u3", "PRED"), Refusal)


def test_site_in_use_counts_per_class() -> None:
    lic = new_licence()
    for i in range(3):
        lic.acquire(T0, "open", f"p{i}", "PRED")
    lic.acquire(T0, "open", "a0", "ACD")
    site = lic.sites["open"]
    assert (site.in_use("PRED"), site.in_use("ACD"), site.in_use("VIR")) == (3, 1, 0)
    lic.revoke_site(T0, "open")
    assert (site.in_use("PRED"), site.in_use("ACD")) == (0, 0)
