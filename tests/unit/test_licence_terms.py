"""Vendor-signed licences in the domain: installing terms, the trial rule, expiry warnings
and the export obligation, on the aggregate alone and on a virtual clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest

from ledger import Licence, LicenceTooSmallError, RefusalReason
from ledger.domain.grace import AVAILABLE, SPENT
from ledger.domain.summaries import licence_summary
from ledger.domain.terms import (
    ExportObligation,
    LicenceBindingError,
    LicenceDatesError,
    LicenceFileError,
    LicenceSerialError,
    LicenceTerms,
    parse_terms,
    render_terms,
)
from ledger.domain.values import GracePolicy, Severity

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)
MASTER = "sha256:" + "ab" * 32
INBOX = "sftp://vendor.example:22/inbox"


def terms(serial: int = 1, **changes: object) -> LicenceTerms:
    base = LicenceTerms(
        customer="Acme", licence_id=f"ACME-{serial:04d}", serial=serial, issued_at=T0,
        expires_at=T0 + timedelta(days=365), limits={"PRED": 100, "ACD": 20},
        master_origin="acme.master", master_key=MASTER,
        export=ExportObligation(("age1example",), 30, INBOX, "SHA256:hostkey"))
    return attrs.evolve(base, **changes)  # type: ignore[arg-type]


def trial() -> Licence:
    lic = Licence.start_trial(T0)
    lic.enrol_site(T0, "north")
    lic.enrol_site(T0, "south")
    lic.collect_events()
    return lic


def install(lic: Licence, t: LicenceTerms, now: datetime = T0) -> bool:
    text = render_terms(t)
    return lic.install(now, t, licence_file=text, sha256=f"{t.serial}:{hash(text)}",
                       issuer="sha256:vendor", master_key=MASTER)


def names(lic: Licence) -> list[str]:
    return [type(e).__name__ for e in lic.collect_events()]


def fill(lic: Licence, n: int, now: datetime, cls: str = "PRED", prefix: str = "u",
         campaign: str = "c") -> list[object]:
    return [lic.acquire(now, "north", f"{prefix}{i}", cls, campaign=campaign) for i in range(n)]


def test_terms_render_and_parse_back_exactly() -> None:
    t = terms(total_pred_acd=110, campaigns=12, policy=GracePolicy(48 * 3600, 30 * 86400, 125))
    assert parse_terms(render_terms(t)) == t


def test_hours_render_as_their_own_table_and_parse_back() -> None:
    t = terms(hours={"PRED": 5000, "VIR": 120})
    text = render_terms(t)
    assert "\n[hours]\nPRED = 5000\nVIR = 120\n" in text
    assert parse_terms(text) == t
    assert "[hours]" not in render_terms(terms())
    assert parse_terms(render_terms(terms())).hours == {}


def test_installing_a_licence_with_hours_makes_an_hours_only_class_allowed() -> None:
    lic = trial()
    assert install(lic, terms(hours={"VIR": 10}))
    (installed,) = [e for e in lic.collect_events() if type(e).__name__ == "LicenceInstalled"]
    assert installed.hours == {"VIR": 10}  # type: ignore[attr-defined]
    assert lic.acquire(T0, "north", "ivr", "VIR").agent_class == "VIR"  # type: ignore[union-attr]
    assert lic.hours_left("VIR", T0 + timedelta(hours=1)) == 9 * 3_600_000_000


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.replace("[grace]", "[hours]\nPRED = 0\n\n[grace]"), "hours"),
    (lambda s: s.replace("[grace]", "[hours]\nFOO = 3\n\n[grace]"), "unknown key"),
    (lambda s: s.replace("[grace]", 'hours = 3\n[grace]'), "hours"),
    (lambda s: s.replace("serial = 1", 'serial = "one"'), "serial"),
    (lambda s: s.replace("[seats]", "[seats]\nFOO = 3"), "unknown key"),
    (lambda s: s.replace('format = "seatledger-licence/1"', 'format = "other"'), "format"),
    (lambda s: s.replace("issued_at = 2026-03-02T08:00:00Z", "issued_at = 2026-03-02"), "UTC"),
    (lambda s: s + "[[broken", "TOML"),
    (lambda s: s.replace('recipients = ["age1example"]', "recipients = []"), "recipients"),
])
def test_malformed_terms_are_refused_with_one_line(edit: object, message: str) -> None:
    with pytest.raises(LicenceFileError, match=message) as e:
        parse_terms(edit(render_terms(terms())))  # type: ignore[operator]
    assert "\n" not in str(e.value)


def test_a_new_master_runs_in_trial_five_seats_no_grace() -> None:
    lic = trial()
    assert not lic.licensed
    grants = fill(lic, 5, T0)
    assert all(not g.overuse for g in grants)  # type: ignore[attr-defined]
    refusal = lic.acquire(T0, "south", "sixth", "ACD")
    assert refusal.reason == RefusalReason.UNLICENSED  # type: ignore[union-attr]
    assert "5 seats" in refusal.detail  # type: ignore[union-attr]
    names(lic)
    lic.release(T0, "north", "u0")
    assert type(lic.acquire(T0, "south", "sixth", "ACD")).__name__ == "Grant"
    assert "OveruseStarted" not in names(lic)


def test_trial_admits_at_most_four_campaigns_among_seats_held() -> None:
    lic = trial()
    for i in range(4):
        lic.acquire(T0, "north", f"u{i}", "PRED", campaign=f"camp{i}")
    refusal = lic.acquire(T0, "north", "u4", "PRED", campaign="camp4")
    assert refusal.reason == RefusalReason.UNLICENSED  # type: ignore[union-attr]
    assert "4 campaigns" in refusal.detail  # type: ignore[union-attr]
    assert type(lic.acquire(T0, "north", "u5", "PRED", campaign="camp2")).__name__ == "Grant"
    lic.release(T0, "north", "u0")  # camp0 is no longer held
    assert type(lic.acquire(T0, "north", "u6", "PRED", campaign="camp9")).__name__ == "Grant"


def test_installing_a_licence_ends_the_trial() -> None:
    lic = trial()
    assert install(lic, terms())
    assert names(lic) == ["LicenceInstalled"]
    assert lic.licensed and lic.serial == 1 and lic.limits == {"PRED": 100, "ACD": 20}
    assert len([g for g in fill(lic, 100, T0 + DAY) if not g.overuse]) == 100  # type: ignore[attr-defined]


def test_the_same_file_again_records_nothing_and_does_not_rearm() -> None:
    lic = trial()
    t = terms()
    install(lic, t)
    fill(lic, 101, T0)
    lic.tick(T0 + timedelta(hours=48))
    assert lic.pools["PRED"].state == SPENT
    names(lic)
    assert not install(lic, t, T0 + timedelta(hours=49))
    assert names(lic) == []
    assert lic.pools["PRED"].state == SPENT


def test_a_new_licence_rearms_only_the_pools_whose_limit_it_raises() -> None:
    lic = trial()
    install(lic, terms())
    fill(lic, 101, T0)
    fill(lic, 21, T0, cls="ACD", prefix="a")
    lic.tick(T0 + timedelta(hours=48))
    names(lic)
    install(lic, terms(2, limits={"PRED": 150, "ACD": 20}), T0 + timedelta(hours=50))
    events = lic.collect_events()
    assert [type(e).__name__ for e in events] == ["LicenceInstalled", "GraceRearmed"]
    assert events[1].pool == "PRED"  # type: ignore[attr-defined]
    assert lic.pools["PRED"].state == AVAILABLE and lic.pools["ACD"].state == SPENT


@pytest.mark.parametrize(("t", "error", "message"), [
    (terms(master_key="sha256:" + "cd" * 32), LicenceBindingError, "another master"),
    (terms(issued_at=T0 + timedelta(hours=2)), LicenceDatesError, "future"),
    (terms(issued_at=T0 - timedelta(days=400), expires_at=T0 - DAY), LicenceDatesError,
     "expired"),
    (terms(limits={"PRED": 99}), LicenceTooSmallError, "at least 100"),
    (terms(expires_at=T0 + timedelta(days=400)), LicenceDatesError, "one year"),
])
def test_licences_that_may_not_be_installed_are_refused(t: LicenceTerms, error: type,
                                                        message: str) -> None:
    lic = trial()
    with pytest.raises(error, match=message):
        install(lic, t)
    assert names(lic) == []
    assert not lic.licensed


def test_an_older_or_equal_serial_is_refused() -> None:
    lic = trial()
    install(lic, terms(3))
    for serial in (2, 3):
        with pytest.raises(LicenceSerialError, match="not above the installed serial 3"):
            install(lic, terms(serial, limits={"PRED": 200}))
    assert lic.serial == 3


def test_expiry_warnings_at_60_30_7_and_1_days_then_trial() -> None:
    lic = trial()
    expires = T0 + timedelta(days=100)
    install(lic, terms(expires_at=expires, export=ExportObligation(("age1x",), 400, "")))
    names(lic)
    seen: list[tuple[int, int]] = []
    now = T0
    while lic.licensed:
        due = lic.next_due()
        assert due is not None and due > now - timedelta(seconds=1)
        now = due
        for notice in lic.tick(now):
            if notice.pool == "licence":  # (export warnings come daily here: none is made)
                seen.append((int(notice.severity), (expires - now).days))
    assert [days for _, days in seen] == [60, 30, 7, 1, 0]
    assert seen[-1][0] == Severity.EXPIRED
    assert now == expires


def test_the_export_obligation_withdraws_grace_and_a_delivery_restores_it() -> None:
    lic = trial()
    install(lic, terms(export=ExportObligation(("age1x",), 3, INBOX)))
    names(lic)
    assert lic.tick(T0 + DAY) == []  # one day without an export: no warning yet
    warned = lic.tick(T0 + 2 * DAY)
    assert [n.severity for n in warned] == [Severity.DAY_LEFT]
    assert "2 days" in warned[0].detail
    lic.tick(T0 + 3 * DAY)
    assert names(lic) == ["LicenceNoticeIssued", "ExportOverdue", "LicenceNoticeIssued"]
    assert lic.export_overdue
    now = T0 + 3 * DAY
    fill(lic, 100, now)
    refusal = lic.acquire(now, "south", "over", "PRED")
    assert refusal.reason == RefusalReason.EXPORT_OVERDUE  # type: ignore[union-attr]
    # An export elsewhere does not count; one to the licence's destination does.
    lic.record_export(now, "2026-03-04", 1, 10, "file:///tmp/elsewhere", "00")
    assert lic.export_overdue
    lic.record_export(now, "2026-03-04", 1, 10, INBOX, "00")
    assert [e for e in names(lic) if e.startswith("Export")] == ["ExportObligationRestored"]
    assert not lic.export_overdue
    grant = lic.acquire(now, "south", "over", "PRED")
    assert grant.overuse  # type: ignore[attr-defined]
    assert lic.export_due_since == now  # the obligation counts again from this delivery


def test_the_licences_campaign_limit() -> None:
    lic = trial()
    install(lic, terms(campaigns=2))
    lic.acquire(T0, "north", "a", "PRED", campaign="x")
    lic.acquire(T0, "north", "b", "PRED", campaign="y")
    refusal = lic.acquire(T0, "north", "c", "PRED", campaign="z")
    assert refusal.reason == RefusalReason.CAMPAIGN_LIMIT  # type: ignore[union-attr]


def test_a_licence_an_operator_issued_with_an_earlier_version_runs_in_trial() -> None:
    # Events of earlier versions are read back as eventsourcing does (object.__new__ and the
    # stored fields): their LicenceIssued has no ``in_force``.
    issued = Licence.issue(T0, customer="Acme", limits={"PRED": 100, "ACD": 20})
    created = issued.collect_events()[0]
    state = dict(created.__dict__)
    del state["in_force"]
    old = object.__new__(type(created))
    object.__setattr__(old, "__dict__", state)
    lic = old.mutate(None)
    assert not lic.licensed and lic.limits == {"PRED": 100, "ACD": 20}
    summary = licence_summary(lic, T0)
    assert summary["mode"] == "trial"
    assert "issued by the operator, not signed by the vendor" in summary["trial_reason"]
    lic.enrol_site(T0, "north")
    fill(lic, 5, T0)
    refusal = lic.acquire(T0, "north", "sixth", "PRED")
    assert refusal.reason == RefusalReason.UNLICENSED  # type: ignore[union-attr]
    assert install(lic, terms()) and lic.licensed
