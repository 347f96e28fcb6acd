"""The rules that turn a customer's records into findings (no I/O): which records are
decoded at all, and what each watched event reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger.persistence.codec import CompactTranscoder, pack_payload
from seatledger.vendor.findings import (
    SEVERITY,
    DaySignals,
    Kind,
    NewFinding,
    Severity,
    worth_decoding,
)

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
REGISTRY = {"a" * 64: "acme", "b" * 64: "globex"}


def payload(**state: Any) -> bytes:
    """A record's payload as the master's ledger stores and exports it."""
    return pack_payload(CompactTranscoder().encode({"timestamp": AT, **state}))


def signals(*records: tuple[str, dict[str, Any]]) -> list[NewFinding]:
    day = DaySignals("acme", "2026-03-02", REGISTRY.get)
    for record_id, (type_, state) in enumerate(records, start=1):
        day.observe(record_id, type_, state)
    return day.findings()


def grant(offline: bool, overuse: bool, site: str = "north") -> dict[str, Any]:
    return {"site": site, "user": "u", "agent_class": "PRED", "tenant": "t", "campaign": "c",
            "seat": 3, "overuse": overuse, "offline": offline, "seq": 7}


@pytest.mark.parametrize(("offline", "overuse", "decoded"), [
    (True, True, True), (True, False, False), (False, True, False), (False, False, False)])
def test_a_seat_grant_is_decoded_only_when_it_can_be_offline_overuse(
        offline: bool, overuse: bool, decoded: bool) -> None:
    assert worth_decoding("SeatGranted", payload(**grant(offline, overuse))) is decoded


def test_unwatched_events_are_never_decoded_and_watched_ones_always() -> None:
    assert not worth_decoding("SeatReleased", payload(site="north"))
    assert not worth_decoding("SiteConnected", payload(site="north"))
    for type_ in ("LicenceIssued", "LicenceInstalled", "ClockStepped", "OveruseStarted",
                  "EnforcementStarted", "ExportOverdue"):
        assert worth_decoding(type_, payload(detail="x"))


def test_a_compressed_seat_grant_is_decoded_whatever_its_bytes() -> None:
    assert worth_decoding("SeatGranted", b"\x01" + b"\x00" * 20)


def test_self_issued_terms_are_a_licence_the_vendor_did_not_issue() -> None:
    [issued, amended] = signals(
        ("LicenceIssued", {"licence_id": "L-1", "customer": "acme"}),
        ("LicenceAmended", {"limits": {"PRED": 500}}))
    assert issued.kind is amended.kind is Kind.UNISSUED_LICENCE
    assert issued.severity is Severity.CRITICAL
    assert issued.detail.startswith("record 1: LicenceIssued (L-1 for acme)")
    assert amended.detail.startswith("record 2: LicenceAmended")
    assert issued.key != amended.key


def test_an_installed_licence_must_be_one_the_registry_issued_to_this_customer() -> None:
    assert signals(("LicenceInstalled", {"sha256": "a" * 64, "licence_id": "ACME-1"})) == []
    [forged] = signals(("LicenceInstalled", {"sha256": "f" * 64, "licence_id": "ACME-9",
                                             "serial": 9}))
    assert forged.kind is Kind.UNISSUED_LICENCE and "not in the registry" in forged.detail
    [moved] = signals(("LicenceInstalled", {"sha256": "b" * 64, "licence_id": "GLOBEX-1"}))
    assert "issued this licence file to 'globex', not to 'acme'" in moved.detail


def test_only_a_clock_set_back_is_a_finding() -> None:
    back = {"wall_clock": AT - timedelta(hours=3), "recorded": AT}
    forward = {"wall_clock": AT + timedelta(hours=3), "recorded": AT}
    [step] = signals(("ClockStepped", back), ("ClockStepped", forward))
    assert step.kind is Kind.CLOCK_STEP_BACK and "set back by 3:00:00" in step.detail


def test_offline_overuse_is_one_finding_per_day() -> None:
    [found] = signals(("SeatGranted", grant(True, True)), ("SeatGranted", grant(False, False)),
                      ("SeatGranted", grant(True, True, "south")))
    assert found.kind is Kind.OFFLINE_OVERUSE and found.severity is Severity.WARNING
    assert found.detail == ("2 seat(s) granted offline beyond the limit at north, south "
                            "(records 1..3)")


def test_grace_enforcement_and_an_overdue_export_are_reported() -> None:
    found = signals(
        ("OveruseStarted", {"pool": "PRED", "in_use": 101, "limit": 100,
                            "deadline": AT + timedelta(hours=48)}),
        ("EnforcementStarted", {"pool": "PRED", "limit": 100}),
        ("ExportOverdue", {"days": 31, "tolerated": 30}))
    assert [f.kind for f in found] == [Kind.GRACE_OPENED, Kind.ENFORCEMENT,
                                       Kind.EXPORT_OBLIGATION]
    assert "101 in use, limit 100; grace until 2026-03-04T10:00:00Z" in found[0].detail
    assert "31 days without a delivered export (30 tolerated)" in found[2].detail


def test_every_kind_has_a_severity_and_the_worst_are_critical() -> None:
    assert set(SEVERITY) == set(Kind)
    assert {k for k, s in SEVERITY.items() if s is Severity.CRITICAL} == {
        Kind.UNISSUED_LICENCE, Kind.FORK}


def test_a_finding_names_its_fact_so_it_opens_once() -> None:
    one = NewFinding.of("acme", Kind.MISSING_DAY, "2026-03-02", "first wording")
    again = NewFinding.of("acme", Kind.MISSING_DAY, "2026-03-02", "other wording")
    other = NewFinding.of("acme", Kind.MISSING_DAY, "2026-03-03", "first wording")
    assert one.key == again.key != other.key


def test_a_refused_licence_install_is_a_serious_finding() -> None:
    found = signals(("LicenceRefused", {"sha256": "c" * 64, "reason": "signature",
                                        "detail": "bad signature: the signature does not match"}))
    assert [(f.kind, SEVERITY[f.kind]) for f in found] == [
        (Kind.REFUSED_LICENCE, Severity.SERIOUS)]
    assert "edited, forged or self-made licence" in found[0].detail
    assert "cccccccccccccccc..." in found[0].detail


def test_over_use_resuming_inside_one_window_is_one_grace_finding() -> None:
    deadline = AT + timedelta(hours=48)
    window = {"pool": "PRED", "in_use": 101, "limit": 100, "deadline": deadline}
    later = {"pool": "PRED", "in_use": 101, "limit": 100, "deadline": deadline + timedelta(days=9)}
    found = signals(("OveruseStarted", window), ("OveruseStarted", window),
                    ("OveruseStarted", later))
    assert [f.kind for f in found] == [Kind.GRACE_OPENED, Kind.GRACE_OPENED]


def test_hours_overdrawn_by_offline_use_is_a_finding() -> None:
    found = signals(("HoursOverdrawn", {"agent_class": "PRED", "site": "east",
                                        "left_us": -5_400_000_000, "detail": "overdrawn"}))
    assert [f.kind for f in found] == [Kind.HOURS_OVERDRAWN]
    assert "site east's offline use drew on the PRED hours with none left (-1.50 h left)" \
        in found[0].detail
