"""The daily export on the master: which records go in which day, the chain of days, and
delivery that is idempotent and catches up in order. Sinks are the in-memory fake."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from exporters import (
    AgeIdentity,
    BuildError,
    DailyExport,
    DayStatus,
    ExportNames,
    Outbox,
    SigningKey,
    Verifier,
    decode_manifest,
    due_days,
    first_day,
    generate_age_identity,
    generate_signing_key,
)
from exporters.errors import SinkUnavailableError
from exporters.manifest import encode_manifest
from exporters.sinks import MemorySink, RetryPolicy, SinkSession
from exporters.sinks.memory import _MemorySession
from ledger import AcquireSeat, LedgerApp, ManualClock, ReleaseSeat

DAY1 = date(2026, 3, 2)  # the conftest clock starts at 08:00 that day


def work_day(app: LedgerApp, clock: ManualClock, agents: int = 10) -> None:
    """Agents log on at 08:00 and off at 16:00; the clock then stands at 08:00 next day."""
    users = [f"a{i}" for i in range(agents)]
    app.execute([AcquireSeat("north", u, "PRED", "acme", "outbound") for u in users])
    clock.advance(hours=8)
    app.execute([ReleaseSeat("north", u) for u in users])
    clock.advance(hours=16)


@pytest.fixture(scope="module")
def vendor() -> AgeIdentity:
    return generate_age_identity()


@pytest.fixture
def export_key(tmp_path: Path) -> SigningKey:
    return generate_signing_key(tmp_path / "export.key", tmp_path / "export.pub")


class Delays(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink(retry=RetryPolicy(attempts=2, sleep=Delays()))


@pytest.fixture
def exporter(ledger: LedgerApp, sink: MemorySink, tmp_path: Path, vendor: AgeIdentity,
             export_key: SigningKey) -> DailyExport:
    return DailyExport(ledger, sink, Outbox(tmp_path / "exports"),
                       recipients=[vendor.recipient], signing_key=export_key)


def manifests(sink: MemorySink) -> list:  # type: ignore[type-arg]
    return [decode_manifest(data) for name, data in sink.files.items()
            if name.endswith(".manifest.json")]


def exported_events(app: LedgerApp) -> list:  # type: ignore[type-arg]
    return [e for _, e in app.events() if type(e).__name__ == "AuditTrailExported"]


def yesterday(clock: ManualClock) -> date:
    return clock.now().date() - timedelta(days=1)


def verify(sink: MemorySink, folder: Path, tmp_path: Path, vendor: AgeIdentity) -> None:
    folder.mkdir(exist_ok=True)
    for name, data in sink.files.items():
        (folder / name).write_bytes(data)
    Verifier((tmp_path / "export.pub").read_text(), identity_text=vendor.file_text).verify(
        [folder])


def test_a_record_belongs_to_the_utc_day_of_its_record_time(
    ledger: LedgerApp, clock: ManualClock, exporter: DailyExport, sink: MemorySink
) -> None:
    clock.set(datetime(2026, 3, 2, 23, 59, 59, 999999, tzinfo=UTC))
    ledger.execute([AcquireSeat("north", "late", "PRED", "acme", "outbound")])
    clock.set(datetime(2026, 3, 3, 0, 0, tzinfo=UTC))
    ledger.execute([ReleaseSeat("north", "late")])
    clock.advance(days=1)

    results = exporter.run(date(2026, 3, 3))

    first, second = manifests(sink)
    assert [r.day for r in results] == [DAY1, date(2026, 3, 3)]
    assert first.records.by_type["SeatGranted"] == 1
    assert "SeatReleased" not in first.records.by_type
    assert second.records.by_type == {"SeatReleased": 1}
    assert second.records.first_id == first.records.last_id + 1


def test_a_day_without_records_still_gets_an_export_in_the_chain(
    ledger: LedgerApp, clock: ManualClock, exporter: DailyExport, sink: MemorySink,
    tmp_path: Path, vendor: AgeIdentity,
) -> None:
    work_day(ledger, clock)
    clock.advance(days=1)  # a quiet day
    work_day(ledger, clock)

    exporter.run(yesterday(clock))

    days = manifests(sink)
    assert [m.day for m in days] == [DAY1, DAY1 + timedelta(1), DAY1 + timedelta(2)]
    quiet = days[1]
    assert quiet.records.count == 0
    assert quiet.records.first_id == days[0].records.last_id + 1
    assert quiet.checkpoint.size == days[0].checkpoint.size
    assert quiet.previous.manifest_sha256 is not None
    verify(sink, tmp_path / "received", tmp_path, vendor)


def test_each_export_is_recorded_as_audit_trail_exported(
    ledger: LedgerApp, clock: ManualClock, exporter: DailyExport, sink: MemorySink
) -> None:
    work_day(ledger, clock)

    [result] = exporter.run(DAY1)

    [event] = exported_events(ledger)
    manifest = manifests(sink)[0]
    assert (event.day, event.first_id, event.last_id) == ("2026-03-02", 1,
                                                         manifest.records.last_id)
    assert event.destination == "memory://" == result.destination
    assert event.sha256 == manifest.data.sha256 == ledger.licence.exported_days["2026-03-02"]
    assert result.uploaded == ExportNames(ledger.origin, DAY1).upload_order


def test_rerunning_an_exported_day_changes_nothing(
    ledger: LedgerApp, clock: ManualClock, exporter: DailyExport, sink: MemorySink
) -> None:
    work_day(ledger, clock)
    exporter.run(DAY1)
    files, records = dict(sink.files), ledger.max_id()

    [again] = exporter.run(DAY1)

    assert again.status is DayStatus.ALREADY_EXPORTED
    assert sink.files == files
    assert ledger.max_id() == records
    assert len(exported_events(ledger)) == 1


def test_days_missed_while_the_sink_is_down_arrive_once_and_in_order(
    ledger: LedgerApp, clock: ManualClock, exporter: DailyExport, sink: MemorySink,
    tmp_path: Path, vendor: AgeIdentity,
) -> None:
    work_day(ledger, clock)
    sink.unavailable_connects = 10**9
    for _ in range(3):  # three daily runs while the server is down
        with pytest.raises(SinkUnavailableError, match="gave up after 2 attempts"):
            exporter.run(yesterday(clock))
        assert sink.files == {}
        work_day(ledger, clock)
    sink.unavailable_connects = 0

    results = exporter.run(yesterday(clock))

    days = [DAY1 + timedelta(i) for i in range(4)]
    assert [r.day for r in results] == days
    assert all(r.status is DayStatus.EXPORTED for r in results)
    # MemorySink keeps final names in the order they were renamed into place.
    arrived = [n for n in sink.files if n.endswith(".manifest.json")]
    assert arrived == [ExportNames(ledger.origin, d).manifest for d in days]
    assert [e.day for e in exported_events(ledger)] == [d.isoformat() for d in days]
    assert not [n for n in sink.files if n.startswith(".")]
    verify(sink, tmp_path / "received", tmp_path, vendor)


class _FailAfterRenames(MemorySink):
    """A memory sink whose connection breaks once ``renames`` files were put in place."""

    def __init__(self, renames: int) -> None:
        super().__init__(retry=RetryPolicy(attempts=1))
        self.renames = renames

    def connect(self) -> SinkSession:
        owner = self

        class Session(_MemorySession):
            def rename(self, source: str, target: str) -> None:
                if owner.renames == 0:
                    raise SinkUnavailableError("memory://: connection reset (simulated)")
                owner.renames -= 1
                super().rename(source, target)

        return Session(self.files)


def test_an_interrupted_delivery_is_finished_later_with_the_same_bytes(
    ledger: LedgerApp, clock: ManualClock, tmp_path: Path, vendor: AgeIdentity,
    export_key: SigningKey,
) -> None:
    work_day(ledger, clock)
    sink = _FailAfterRenames(renames=2)
    exporter = DailyExport(ledger, sink, Outbox(tmp_path / "exports"),
                           recipients=[vendor.recipient], signing_key=export_key)
    with pytest.raises(SinkUnavailableError):
        exporter.run(DAY1)
    names = ExportNames(ledger.origin, DAY1)
    delivered = {n: sink.files[n] for n in names.upload_order[:2]}
    assert names.manifest not in sink.files and exported_events(ledger) == []

    sink.renames = 10
    [result] = exporter.run(DAY1)

    assert result.uploaded == names.upload_order[2:]
    assert {n: sink.files[n] for n in delivered} == delivered
    assert len(exported_events(ledger)) == 1
    verify(sink, tmp_path / "received", tmp_path, vendor)


def test_the_outbox_keeps_only_manifests_once_a_day_is_recorded(
    ledger: LedgerApp, clock: ManualClock, exporter: DailyExport, tmp_path: Path
) -> None:
    work_day(ledger, clock)

    exporter.run(DAY1)

    names = ExportNames(ledger.origin, DAY1)
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == sorted(
        [names.manifest, names.manifest_signature])


def test_a_lost_outbox_is_recovered_from_the_manifest_on_the_sink(
    ledger: LedgerApp, clock: ManualClock, exporter: DailyExport, sink: MemorySink,
    tmp_path: Path, vendor: AgeIdentity,
) -> None:
    work_day(ledger, clock)
    exporter.run(DAY1)
    shutil.rmtree(tmp_path / "exports")
    work_day(ledger, clock)

    [result] = exporter.run(yesterday(clock))

    assert result.status is DayStatus.EXPORTED
    verify(sink, tmp_path / "received", tmp_path, vendor)


def test_a_local_manifest_that_differs_from_the_delivered_one_is_not_trusted(
    ledger: LedgerApp, clock: ManualClock, exporter: DailyExport, sink: MemorySink,
    tmp_path: Path, vendor: AgeIdentity,
) -> None:
    work_day(ledger, clock)
    exporter.run(DAY1)
    local = tmp_path / "exports" / ExportNames(ledger.origin, DAY1).manifest
    stale = decode_manifest(local.read_bytes())
    local.write_bytes(encode_manifest(msgspec.structs.replace(
        stale, data=msgspec.structs.replace(stale.data, sha256="0" * 64))))
    work_day(ledger, clock)

    [result] = exporter.run(yesterday(clock))

    assert result.status is DayStatus.EXPORTED
    assert decode_manifest(local.read_bytes()) == stale  # fetched back from the sink
    verify(sink, tmp_path / "received", tmp_path, vendor)


def test_a_lost_outbox_and_sink_stop_the_chain_with_a_clear_reason(
    ledger: LedgerApp, clock: ManualClock, exporter: DailyExport, sink: MemorySink,
    tmp_path: Path,
) -> None:
    work_day(ledger, clock)
    exporter.run(DAY1)
    shutil.rmtree(tmp_path / "exports")
    sink.files.clear()
    work_day(ledger, clock)

    with pytest.raises(BuildError, match="cannot continue the chain: the manifest of 2026-03-02"):
        exporter.run(yesterday(clock))


def test_a_day_that_is_not_over_is_refused(
    ledger: LedgerApp, clock: ManualClock, exporter: DailyExport
) -> None:
    with pytest.raises(BuildError, match="2026-03-02 is not over yet"):
        exporter.run(DAY1)


def test_due_days_run_from_the_first_record_to_yesterday_then_after_the_last_export(
    ledger: LedgerApp, clock: ManualClock, exporter: DailyExport, open_ledger: object
) -> None:
    assert due_days(ledger, DAY1) == []
    for _ in range(3):
        work_day(ledger, clock)
    today = clock.now().date()

    assert first_day(ledger) == DAY1
    assert due_days(ledger, today) == [DAY1, DAY1 + timedelta(1), DAY1 + timedelta(2)]
    assert due_days(ledger, today + timedelta(days=5)) == due_days(ledger, today)
    exporter.run(DAY1 + timedelta(1))
    assert due_days(ledger, today) == [DAY1 + timedelta(2)]


def test_an_empty_ledger_has_nothing_due(tmp_path: Path, keys: dict[str, object]) -> None:
    app = LedgerApp(f"sqlite:///{tmp_path}/empty.db", **keys)  # type: ignore[arg-type]
    try:
        assert due_days(app, date(2030, 1, 1)) == []
        assert first_day(app) is None
    finally:
        app.close()


def test_every_recorded_checkpoint_of_the_day_travels_in_the_export(
    open_ledger: object, clock: ManualClock, tmp_path: Path, vendor: AgeIdentity,
    export_key: SigningKey,
) -> None:
    app = open_ledger(checkpoint_every=7)  # type: ignore[operator]
    app.issue_licence(customer="Acme", limits={"PRED": 100, "ACD": 20})
    app.enrol_site("north")
    for i in range(12):
        app.execute([AcquireSeat("north", f"u{i}", "PRED", "acme", "outbound")])
    clock.advance(days=1)
    sink = MemorySink()
    DailyExport(app, sink, Outbox(tmp_path / "exports"), recipients=[vendor.recipient],
                signing_key=export_key).run(DAY1)

    [manifest] = manifests(sink)
    assert manifest.records.by_type["AuditCheckpointSigned"] >= 1
    verify(sink, tmp_path / "received", tmp_path, vendor)

