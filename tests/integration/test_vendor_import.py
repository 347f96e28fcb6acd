"""``seatledger vendor import``: every customer's exports into the vendor's one store, verified
per customer and imported exactly once, with the findings the histories and the chains give.

Each customer is a real ledger (SQLite) exporting through the project's own export builder
into a folder, with a licence the vendor really issued for that master's keys."""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exporters import DailyExport, Outbox, SigningKey, generate_signing_key
from exporters.sinks import LocalSink
from ledger import AcquireSeat, LedgerApp, ManualClock, ReleaseSeat
from seatledger.cli.main import main as cli_main
from seatledger.config.licence_file import LicenceRequest, SignedLicence, open_licence, sign_licence
from seatledger.vendor.findings import Finding, FindingError, Findings, Kind
from seatledger.vendor.home import VendorConfig, init_vendor_home
from seatledger.vendor.imports import (
    UNKNOWN_CUSTOMER,
    ImportSummary,
    VendorImport,
    VendorImportError,
    customer_days,
)
from seatledger.vendor.licensing import issue_licence
from seatledger.vendor.records import VendorRecords
from seatledger.vendor.registry import VendorStore
from tests.integration.servers import SshdServer

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@attrs.define
class Master:
    """A customer's master: its ledger, keys and export outbox."""

    name: str
    root: Path
    clock: ManualClock
    signing: Ed25519PrivateKey
    export_key: SigningKey
    recipient: str
    app: LedgerApp
    worked: int = 0

    @classmethod
    def create(cls, tmp: Path, name: str, vendor: VendorConfig, store: VendorStore | None,
               start: datetime = START, *, tolerated_days: int | None = None,
               pred: int = 100, install: Callable[[SignedLicence], SignedLicence] | None = None
               ) -> Master:
        """With ``install``, the master installs the licence (as ``install`` gives it back)
        and its history starts as a new master's; otherwise the operator sets its own terms
        (old-style LicenceIssued), which the vendor never issued."""
        root = tmp / name
        root.mkdir()
        clock = ManualClock(start)
        signing = Ed25519PrivateKey.generate()
        export_key = generate_signing_key(root / "export.key", root / "export.pub")
        signed = None
        if store is not None:  # the vendor issues this master's licence
            store.add_customer(name)
            request = LicenceRequest.for_master(name, signing.public_key(),
                                                export_key.public_key_text)
            signed = issue_licence(vendor, store, customer=name, request=request,
                                   limits={"PRED": pred}, tolerated_days=tolerated_days,
                                   now=start - timedelta(days=1))
        master = cls(name, root, clock, signing, export_key, vendor.recipient(),
                     cls._open(root, clock, signing, name))
        if install is not None and signed is not None:
            licence = install(signed)
            master.app.start_trial()
            master.app.install_licence(licence.terms, licence_file=licence.text,
                                       sha256=licence.sha256, issuer=licence.issuer)
        else:
            master.app.issue_licence(customer=name, limits={"PRED": pred, "ACD": 20})
        master.app.enrol_site("north")
        return master

    @staticmethod
    def _open(root: Path, clock: ManualClock, signing: Ed25519PrivateKey,
              name: str) -> LedgerApp:
        key_file = root / "store.key"
        if not key_file.exists():
            key_file.write_bytes(os.urandom(32))
        return LedgerApp(f"sqlite:///{root / 'ledger.db'}", key=key_file.read_bytes(),
                         signing_key=signing, clock=clock, origin=name,
                         checkpoint_file=root / "latest.checkpoint")

    def work(self, days: int = 1, users: int = 12, tag: str = "") -> None:
        """Seat traffic, then on to 09:00 the next day, ``days`` times."""
        for _ in range(days):
            people = [f"{tag}d{self.worked}-{i}" for i in range(users)]
            self.app.execute([AcquireSeat("north", u, "PRED", "t", "c") for u in people])
            self.clock.advance(hours=6)
            self.app.execute([ReleaseSeat("north", u) for u in people])
            self.clock.advance(hours=18)
            self.worked += 1

    def export(self, folder: Path, *, arrived: datetime | None = None) -> list[date]:
        """Export every day over into ``folder``; the files arrive at the master's time (or
        ``arrived``), not at the test's."""
        folder.mkdir(parents=True, exist_ok=True)
        before = set(folder.iterdir())
        exporter = DailyExport(self.app, LocalSink(folder), Outbox(self.root / "exports"),
                               recipients=[self.recipient], signing_key=self.export_key)
        exported = [r.day for r in exporter.run(self.app.now().date() - timedelta(days=1))]
        stamp = (arrived or self.clock.now()).timestamp()
        for path in set(folder.iterdir()) - before:
            os.utime(path, (stamp, stamp))
        return exported

    def backup(self, to: Path) -> Path:
        """A copy of the whole data directory (ledger, outbox, checkpoint file)."""
        self.app.close()
        shutil.copytree(self.root, to)
        self.app = self._open(self.root, self.clock, self.signing, self.name)
        return to

    def restore(self, backup: Path) -> None:
        """The operator restores an older backup over the data directory."""
        self.app.close()
        shutil.rmtree(self.root)
        shutil.copytree(backup, self.root)
        self.app = self._open(self.root, self.clock, self.signing, self.name)

    def records(self) -> list[tuple[int, str, bytes]]:
        return [(n.id, n.topic, payload) for n, payload in self.app.records()]


@pytest.fixture(params=["sqlite", "postgres"])
def any_store_url(request: pytest.FixtureRequest) -> str | None:
    """The vendor's store on its default SQLite file, and on the real PostgreSQL."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def vendor(tmp_path: Path) -> VendorConfig:
    return init_vendor_home(tmp_path / "vendor", name="Reseller")


@pytest.fixture
def store(vendor: VendorConfig) -> Iterator[VendorStore]:
    with VendorStore.open(vendor) as opened:
        yield opened


@pytest.fixture
def run_import(vendor: VendorConfig, store: VendorStore) -> Callable[..., ImportSummary]:
    def run(*folders: Path, now: datetime, workers: int | None = None) -> ImportSummary:
        return VendorImport(vendor, store, now=now, workers=workers).run(
            list(folders) or [vendor.layout.inbox])
    return run


def of_kind(findings: list[Finding] | tuple[Finding, ...], kind: Kind,
            customer: str | None = None) -> list[Finding]:
    return [f for f in findings if f.kind == kind and customer in (None, f.customer)]


def stored(vendor: VendorConfig, store: VendorStore, customer: str) -> list[tuple[int, str, bytes]]:
    return [(r.record_id, r.topic, r.payload)
            for r in VendorRecords(vendor, store.engine).read(customer=customer)]


def day(n: int) -> str:
    return (START.date() + timedelta(days=n)).isoformat()


# ------------------------------------------------------------------ the normal case
def test_three_customers_with_interleaved_days_are_imported_once(
        tmp_path: Path, any_store_url: str | None) -> None:
    vendor = init_vendor_home(tmp_path / "vendor", name="Reseller", store_url=any_store_url)
    inbox = vendor.layout.inbox
    with VendorStore.open(vendor) as store:
        masters = [Master.create(tmp_path, "alpha", vendor, store),
                   Master.create(tmp_path, "beta", vendor, store, START + timedelta(days=1)),
                   Master.create(tmp_path, "gamma", vendor, store)]
        # Deliveries interleave: each customer's days arrive over several runs.
        masters[0].work(2)
        masters[2].work(1)
        for m in masters:
            m.export(inbox)
        now = START + timedelta(days=2, hours=1)
        first = VendorImport(vendor, store, now=now).run([inbox])
        assert {(d.customer, d.day) for d in first.of("imported")} == {
            ("alpha", day(0)), ("alpha", day(1)), ("gamma", day(0))}
        masters[1].work(2)
        masters[0].work(1)
        masters[2].work(2)
        for m in masters:
            m.export(inbox)
        now = START + timedelta(days=4, hours=1)
        second = VendorImport(vendor, store, now=now, workers=2).run([inbox])  # read in parallel
        assert sorted((d.customer, d.day) for d in second.of("imported")) == [
            ("alpha", day(2)), ("beta", day(1)), ("beta", day(2)), ("gamma", day(1)),
            ("gamma", day(2))]
        assert len(second.of("already")) == 3

        assert customer_days(store.engine) == {
            "alpha": [day(0), day(1), day(2)], "beta": [day(1), day(2)],
            "gamma": [day(0), day(1), day(2)]}
        for m in masters:  # exactly the master's records, payloads unchanged, once
            assert stored(vendor, store, m.name) == m.records()[:len(stored(vendor, store,
                                                                             m.name))]
            exported = m.app.max_id() - (m.app.max_id() - len(stored(vendor, store, m.name)))
            assert exported == len(stored(vendor, store, m.name))
        total = sum(len(stored(vendor, store, m.name)) for m in masters)
        assert first.records + second.records == total

        again = VendorImport(vendor, store, now=now).run([inbox])
        assert again.records == 0 and not again.findings
        assert {d.status for d in again.days} == {"already"}
        with store.engine.connect() as conn:
            count = conn.execute(sa.text("SELECT count(*) FROM vendor_records")).scalar()
        assert count == total
        kinds = {f.kind for f in Findings(store.engine).all()}
        assert kinds == {Kind.UNISSUED_LICENCE}  # the operator's own terms, nothing else


def test_the_records_are_sealed_at_rest_with_the_vendors_key(
        tmp_path: Path, vendor: VendorConfig, store: VendorStore,
        run_import: Callable[..., ImportSummary]) -> None:
    master = Master.create(tmp_path, "alpha", vendor, store)
    master.work(1, tag="secret-agent-name-")
    master.export(vendor.layout.inbox)
    run_import(now=START + timedelta(days=1, hours=2))
    raw = (vendor.layout.store_db).read_bytes()
    assert b"secret-agent-name-" not in raw
    assert oct(vendor.layout.store_key.stat().st_mode & 0o777) == "0o600"
    names = [r.event().user for r in VendorRecords(vendor, store.engine).read()
             if r.topic.endswith("SeatGranted")]
    assert names and all(n.startswith("secret-agent-name-") for n in names)


# ------------------------------------------------------------------ findings in the history
def test_a_licence_the_registry_did_not_issue_is_a_critical_finding(
        tmp_path: Path, vendor: VendorConfig, store: VendorStore,
        run_import: Callable[..., ImportSummary]) -> None:
    master = Master.create(tmp_path, "alpha", vendor, store)
    master.work(1)
    master.export(vendor.layout.inbox)
    summary = run_import(now=START + timedelta(days=1, hours=2))
    [forged] = of_kind(summary.findings, Kind.UNISSUED_LICENCE, "alpha")
    assert forged.severity == 4 and forged.day == day(0)
    assert forged.detail.startswith("record 1: LicenceIssued")
    assert "registry did not issue" in forged.detail
    assert Findings(store.engine).watchlist()[0] == forged


def test_an_installed_licence_is_checked_against_the_registry(
        tmp_path: Path, vendor: VendorConfig, store: VendorStore,
        run_import: Callable[..., ImportSummary]) -> None:
    other = generate_signing_key(tmp_path / "other-vendor.key", tmp_path / "other-vendor.pub")

    def self_made(signed: SignedLicence) -> SignedLicence:
        terms = attrs.evolve(signed.terms, limits={"PRED": 5000})
        return open_licence(sign_licence(terms, other).encode(), other.public_key_text)

    honest = Master.create(tmp_path, "alpha", vendor, store, install=lambda s: s)
    forger = Master.create(tmp_path, "beta", vendor, store, install=self_made)
    for m in (honest, forger):
        m.work(1)
        m.export(vendor.layout.inbox)
    summary = run_import(now=START + timedelta(days=1, hours=2))
    assert {d.customer for d in summary.of("imported")} == {"alpha", "beta"}
    assert not of_kind(summary.findings, Kind.UNISSUED_LICENCE, "alpha")
    [forged] = of_kind(summary.findings, Kind.UNISSUED_LICENCE, "beta")
    assert "LicenceInstalled BETA-0001 serial 1" in forged.detail
    assert "is not in the registry (a forged or self-made licence)" in forged.detail


def test_clock_set_back_and_a_grace_window_are_findings(
        tmp_path: Path, vendor: VendorConfig, store: VendorStore,
        run_import: Callable[..., ImportSummary]) -> None:
    master = Master.create(tmp_path, "alpha", vendor, store)
    master.clock.advance(hours=2)
    master.app.execute([AcquireSeat("north", f"u{i}", "PRED", "t", "c") for i in range(60)])
    master.clock.set(master.clock.now() - timedelta(hours=1))  # the wall clock set back
    master.app.execute([AcquireSeat("north", f"v{i}", "PRED", "t", "c") for i in range(41)])
    master.clock.set(START + timedelta(days=1, hours=2))
    master.export(vendor.layout.inbox)
    summary = run_import(now=START + timedelta(days=1, hours=3))
    [step] = of_kind(summary.findings, Kind.CLOCK_STEP_BACK)
    assert "set back by" in step.detail and step.severity == 3
    [grace] = of_kind(summary.findings, Kind.GRACE_OPENED)
    assert "over-use of PRED" in grace.detail and "limit 100" in grace.detail


# ------------------------------------------------------------------ forks
def test_a_restored_backup_is_a_fork_kept_aside_and_the_first_branch_stays_billed(
        tmp_path: Path, any_store_url: str | None) -> None:
    vendor = init_vendor_home(tmp_path / "vendor", name="Reseller", store_url=any_store_url)
    with VendorStore.open(vendor) as store:
        master = Master.create(tmp_path, "alpha", vendor, store)
        master.work(2)
        first_inbox = tmp_path / "inbox-1"
        master.export(first_inbox)
        backup = master.backup(tmp_path / "backup")
        master.work(2, users=104)  # over-use the customer would like to erase
        master.export(first_inbox)
        VendorImport(vendor, store, now=START + timedelta(days=4, hours=2)).run([first_inbox])
        billed = customer_days(store.engine)["alpha"]
        assert billed == [day(0), day(1), day(2), day(3)]
        billed_records = stored(vendor, store, "alpha")

        master.restore(backup)  # back to the end of day 1: days 2 and 3 never happened
        master.clock.set(START + timedelta(days=2))
        master.work(3, users=3, tag="restored-")
        second_inbox = tmp_path / "inbox-2"
        assert master.export(second_inbox) == [START.date() + timedelta(days=n)
                                               for n in (2, 3, 4)]
        summary = VendorImport(vendor, store, now=START + timedelta(days=5, hours=2)).run(
            [second_inbox])
        assert [(d.day, d.status) for d in summary.days] == [
            (day(2), "quarantined"), (day(3), "quarantined"), (day(4), "quarantined")]
        [fork] = of_kind(summary.findings, Kind.FORK, "alpha")
        assert fork.severity == 4 and fork.day == day(2)
        with store.engine.connect() as conn:
            roots: dict[str, str] = dict(conn.execute(sa.text(
                "SELECT status, end_root FROM vendor_days WHERE day = :d"), {"d": day(2)}).all())
        for root in roots.values():  # the finding names both roots
            assert base64.b64encode(bytes.fromhex(root)).decode() in fork.detail
        assert len(roots) == 2
        assert customer_days(store.engine)["alpha"] == billed
        assert stored(vendor, store, "alpha") == billed_records
        # Nothing of the quarantined branch is in the billed records, however often it runs.
        again = VendorImport(vendor, store, now=START + timedelta(days=5, hours=3)).run(
            [second_inbox])
        assert {d.status for d in again.days} == {"already"} and not of_kind(
            again.findings, Kind.FORK)
        # The billed chain lacks day 4: once it is overdue, it is missing.
        assert not of_kind(again.findings, Kind.MISSING_DAY)
        later = VendorImport(vendor, store, now=START + timedelta(days=7)).run([second_inbox])
        assert [f.day for f in of_kind(later.findings, Kind.MISSING_DAY)] == [day(4)]


def test_a_second_manifest_of_an_imported_day_is_a_fork(
        tmp_path: Path, vendor: VendorConfig, store: VendorStore,
        run_import: Callable[..., ImportSummary]) -> None:
    master = Master.create(tmp_path, "alpha", vendor, store)
    backup_at_start = master.backup(tmp_path / "fresh")
    master.work(1)
    master.export(tmp_path / "a")
    run_import(tmp_path / "a", now=START + timedelta(days=1, hours=2))
    master.restore(backup_at_start)  # everything since the licence was installed, gone
    master.work(1, users=2, tag="other-")
    master.export(tmp_path / "b")
    summary = run_import(tmp_path / "b", now=START + timedelta(days=1, hours=3))
    [fork] = of_kind(summary.findings, Kind.FORK)
    assert f"a second history of {day(0)}" in fork.detail
    assert summary.of("quarantined")[0].day == day(0)


def test_the_same_history_built_again_is_not_a_fork(
        tmp_path: Path, vendor: VendorConfig, store: VendorStore,
        run_import: Callable[..., ImportSummary]) -> None:
    master = Master.create(tmp_path, "alpha", vendor, store)
    master.work(2)
    before_export = master.backup(tmp_path / "before-export")
    master.export(tmp_path / "a")
    run_import(tmp_path / "a", now=START + timedelta(days=2, hours=2))
    master.restore(before_export)  # the outbox is lost: the same days are built anew
    master.work(1)
    master.export(tmp_path / "b")
    summary = run_import(tmp_path / "b", now=START + timedelta(days=3, hours=2))
    assert [(d.day, d.status) for d in summary.days] == [
        (day(0), "duplicate"), (day(1), "duplicate"), (day(2), "imported")]
    assert not of_kind(summary.findings, Kind.FORK)
    assert customer_days(store.engine)["alpha"] == [day(0), day(1), day(2)]
    assert stored(vendor, store, "alpha") == master.records()[:len(stored(vendor, store,
                                                                          "alpha"))]


# ------------------------------------------------------------------ keys
def test_an_export_signed_by_an_unknown_key_is_refused_and_listed(
        tmp_path: Path, vendor: VendorConfig, store: VendorStore,
        run_import: Callable[..., ImportSummary]) -> None:
    known = Master.create(tmp_path, "alpha", vendor, store)
    stranger = Master.create(tmp_path, "stranger", vendor, None)  # no licence issued
    for m in (known, stranger):
        m.work(1)
        m.export(vendor.layout.inbox)
    summary = run_import(now=START + timedelta(days=1, hours=2))
    [refused] = summary.of("refused")
    assert refused.customer == UNKNOWN_CUSTOMER and "stranger" in Path(refused.file).name
    assert "no licence the vendor issued names" in refused.detail
    [unknown] = of_kind(summary.findings, Kind.UNKNOWN_KEY)
    assert unknown.customer == UNKNOWN_CUSTOMER and unknown.severity == 3
    assert [d.customer for d in summary.of("imported")] == ["alpha"]
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT DISTINCT customer FROM vendor_records")).all() == [
            ("alpha",)]
    again = run_import(now=START + timedelta(days=1, hours=3))
    assert len(again.of("refused")) == 1 and not again.findings  # listed again, reported once


def test_a_tampered_export_is_refused_and_not_imported(
        tmp_path: Path, vendor: VendorConfig, store: VendorStore,
        run_import: Callable[..., ImportSummary]) -> None:
    master = Master.create(tmp_path, "alpha", vendor, store)
    master.work(2)
    master.export(vendor.layout.inbox)
    data = next(vendor.layout.inbox.glob(f"*{day(1)}.jsonl.gz.age"))
    data.write_bytes(data.read_bytes()[:-1] + b"x")
    summary = run_import(now=START + timedelta(days=2, hours=2), workers=2)
    assert [d.day for d in summary.of("imported")] == [day(0)]
    [refused] = summary.of("refused")
    assert refused.day == day(1) and "is not the file the manifest names" in refused.detail
    assert of_kind(summary.findings, Kind.INVALID_EXPORT)[0].day == day(1)


def test_a_new_master_key_for_the_same_customer_is_reported(
        tmp_path: Path, vendor: VendorConfig, store: VendorStore,
        run_import: Callable[..., ImportSummary]) -> None:
    master = Master.create(tmp_path, "alpha", vendor, store)
    master.work(1)
    master.export(vendor.layout.inbox)
    run_import(now=START + timedelta(days=1, hours=2))
    # The operator moves the ledger to a new machine with a new export key the vendor knows.
    new_key = generate_signing_key(tmp_path / "new-export.key", tmp_path / "new-export.pub")
    request = LicenceRequest.for_master("alpha", master.signing.public_key(),
                                        new_key.public_key_text)
    issue_licence(vendor, store, customer="alpha", request=request, limits={"PRED": 100},
                  now=START)
    master.export_key = new_key
    master.work(1)
    master.export(vendor.layout.inbox)
    summary = run_import(now=START + timedelta(days=2, hours=2))
    assert [d.day for d in summary.of("imported")] == [day(1)]
    [changed] = of_kind(summary.findings, Kind.KEY_CHANGED)
    assert "export key changed" in changed.detail


# ------------------------------------------------------------------ gaps, late and missing
def test_a_day_after_a_gap_waits_until_the_missing_day_arrives(
        tmp_path: Path, vendor: VendorConfig, store: VendorStore,
        run_import: Callable[..., ImportSummary]) -> None:
    inbox = vendor.layout.inbox
    master = Master.create(tmp_path, "alpha", vendor, store)
    master.work(4)
    master.export(inbox)
    held_back = tmp_path / "held-back"
    held_back.mkdir()
    for path in inbox.glob(f"*{day(1)}*"):
        path.rename(held_back / path.name)
    summary = run_import(now=START + timedelta(days=4, hours=2))
    assert [(d.day, d.status) for d in summary.days] == [
        (day(0), "imported"), (day(2), "waiting"), (day(3), "waiting")]
    assert "follows " + day(1) in summary.of("waiting")[0].detail
    [missing] = of_kind(summary.findings, Kind.MISSING_DAY)
    assert missing.day == day(1) and f"the export of {day(3)} has" in missing.detail
    assert customer_days(store.engine) == {"alpha": [day(0)]}

    again = run_import(now=START + timedelta(days=4, hours=3))
    assert [d.status for d in again.days if d.status != "already"] == ["waiting", "waiting"]
    assert not again.findings

    arrived = START + timedelta(days=4, hours=4)  # 61 hours after day 1 ended
    for path in held_back.iterdir():
        target = inbox / path.name
        path.rename(target)
        os.utime(target, (arrived.timestamp(), arrived.timestamp()))
    filled = run_import(now=START + timedelta(days=4, hours=5))
    assert [(d.day, d.status) for d in filled.days if d.status != "already"] == [
        (day(1), "imported"), (day(2), "imported"), (day(3), "imported")]
    [late] = of_kind(filled.findings, Kind.LATE_DAY)
    assert late.day == day(1) and "61 hours after the day ended" in late.detail
    assert customer_days(store.engine)["alpha"] == [day(n) for n in range(4)]
    assert stored(vendor, store, "alpha") == master.records()[:len(stored(vendor, store,
                                                                          "alpha"))]


def test_days_missing_at_the_tail_breach_the_export_obligation(
        tmp_path: Path, vendor: VendorConfig, store: VendorStore,
        run_import: Callable[..., ImportSummary]) -> None:
    master = Master.create(tmp_path, "alpha", vendor, store, tolerated_days=2)
    master.work(1)
    master.export(vendor.layout.inbox)
    # Day 0 ended on day 1 at midnight; two and a half days on, days 1 and 2 are overdue
    # too little to count: day 1 only (36 hours after it ended).
    summary = run_import(now=START.replace(hour=0) + timedelta(days=3, hours=13))
    assert [f.day for f in of_kind(summary.findings, Kind.MISSING_DAY)] == [day(1)]
    assert not of_kind(summary.findings, Kind.EXPORT_OBLIGATION)
    later = run_import(now=START.replace(hour=0) + timedelta(days=5, hours=13))
    assert [f.day for f in of_kind(later.findings, Kind.MISSING_DAY)] == [day(2), day(3)]
    [breach] = of_kind(later.findings, Kind.EXPORT_OBLIGATION)
    assert breach.severity == 3 and "3 days without an importable export" in breach.detail
    assert "2 tolerated" in breach.detail


# ------------------------------------------------------------------ the findings' own log
def test_findings_are_chained_events_and_an_acknowledgement_is_one_more(
        tmp_path: Path, vendor: VendorConfig, store: VendorStore,
        run_import: Callable[..., ImportSummary]) -> None:
    master = Master.create(tmp_path, "alpha", vendor, store)
    master.work(1)
    master.export(vendor.layout.inbox)
    run_import(now=START + timedelta(days=1, hours=2))
    findings = Findings(store.engine)
    [top, *_] = findings.watchlist()
    acked = findings.ack(top.id, "spoke to the customer: test lab")
    assert acked.ack_note == "spoke to the customer: test lab" and acked.acked_at
    assert top.id not in [f.id for f in findings.watchlist()]
    assert findings.get(top.id) == acked
    events = findings.verify_chain()
    assert events == len(findings.all()) + 1
    with pytest.raises(FindingError, match="acknowledged already"):
        findings.ack(top.id, "again")
    with pytest.raises(FindingError, match="no finding 999"):
        findings.ack(999, "none")
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE vendor_findings SET acked_at = NULL"))
    with pytest.raises(FindingError, match=f"finding {top.id} differs"):
        findings.verify_chain()
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE vendor_events SET data = replace(data, 'test lab', "
                             "'nothing') WHERE type = 'finding_acknowledged'"))
    with pytest.raises(FindingError, match=f"vendor event {events} was altered"):
        findings.verify_chain()


# ------------------------------------------------------------------ command line
@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    def invoke(*argv: str | Path) -> tuple[int, str, str]:
        code = cli_main(["vendor", *map(str, argv)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return invoke


def test_the_command_imports_lists_and_acknowledges(
        tmp_path: Path, vendor: VendorConfig, store: VendorStore,
        cli: Callable[..., tuple[int, str, str]]) -> None:
    recent = (datetime.now(UTC) - timedelta(days=2)).replace(hour=9, minute=0, second=0,
                                                             microsecond=0)
    master = Master.create(tmp_path, "alpha", vendor, store, recent)
    master.work(1)
    master.export(vendor.layout.inbox)
    home = ("--vendor-dir", vendor.root)
    code, out, err = cli("import", *home)
    assert (code, err) == (0, "")
    assert out.startswith("imported 1 day(s) of 1 customer(s):")
    assert "unissued_licence alpha" in out
    code, out, _ = cli("import", *home, "--json")
    result = json.loads(out)
    assert code == 0 and result["counts"] == {"already": 1} and result["findings"] == []
    [finding] = [f for f in Findings(store.engine).watchlist() if f.kind == "unissued_licence"]
    code, out, err = cli("finding", "ack", finding.id, "--note", "old test licence", *home)
    assert (code, err) == (0, "") and f"finding #{finding.id} acknowledged" in out
    code, out, err = cli("finding", "ack", finding.id, "--note", "again", *home)
    assert code == 1 and out == "" and err.count("\n") == 1
    assert err.startswith(f"seatledger: finding {finding.id} was acknowledged already")
    code, _, err = cli("import", *home, "--inbox", tmp_path / "nowhere")
    assert code == 1 and err == f"seatledger: the inbox {tmp_path / 'nowhere'} is not a folder\n"
    with pytest.raises(SystemExit) as usage:
        cli("finding", "ack", "x", "--note", "n", *home)
    assert usage.value.code == 2


def test_the_watchlist_ranks_by_severity_then_recency(
        tmp_path: Path, vendor: VendorConfig, store: VendorStore,
        run_import: Callable[..., ImportSummary], capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from seatledger.cli import vendor_import

    master = Master.create(tmp_path, "alpha", vendor, store)
    master.work(1)
    master.export(vendor.layout.inbox)
    run_import(now=START + timedelta(days=1, hours=2))
    run_import(now=START + timedelta(days=3, hours=4))  # day 1 missing now
    run_import(now=START + timedelta(days=4, hours=4))  # and day 2
    watch = Findings(store.engine).watchlist()
    assert [(f.kind, f.day) for f in watch] == [
        ("unissued_licence", day(0)), ("missing_day", day(2)), ("missing_day", day(1))]
    assert [f.severity for f in watch] == sorted((f.severity for f in watch), reverse=True)

    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    report = parser.add_subparsers().add_parser("report").add_subparsers()

    def vadd(parent: Any, name: str, fn: Any, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help_text)
        p.add_argument("--vendor-dir", default=str(vendor.root))
        p.set_defaults(fn=fn)
        return p

    vendor_import.register_watchlist(report, vadd)
    args = parser.parse_args(["--json", "report", "watchlist"])
    assert args.fn(args) == 0
    listed = json.loads(capsys.readouterr().out)["findings"]
    assert [f["id"] for f in listed] == [f.id for f in watch]


def test_the_import_pulls_from_sftp_with_the_host_key_checked(
        tmp_path: Path, vendor: VendorConfig, store: VendorStore, sshd_server: SshdServer,
        cli: Callable[..., tuple[int, str, str]]) -> None:
    recent = (datetime.now(UTC) - timedelta(days=3)).replace(hour=9, minute=0, second=0,
                                                             microsecond=0)
    master = Master.create(tmp_path, "alpha", vendor, store, recent)
    master.work(2)
    outbox = sshd_server.root / f"vendor-{os.getpid()}-{tmp_path.name}"
    master.export(outbox)
    url = f"sftp://{sshd_server.username}@{sshd_server.host}:{sshd_server.port}/{outbox}"
    home = ("--vendor-dir", vendor.root, "--identity", sshd_server.client_key)
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    code, out, err = cli("import", *home, "--sftp", url, "--known-hosts", empty)
    assert code == 1 and out == "" and err.count("\n") == 1
    assert "is not in" in err and "refused" in err
    assert not list(vendor.layout.inbox.iterdir())

    code, out, err = cli("import", *home, "--sftp", url, "--known-hosts",
                         sshd_server.known_hosts)
    assert (code, err) == (0, "")
    assert out.startswith(f"pulled 8 file(s) from sftp://{sshd_server.username}@")
    assert "imported 2 day(s) of 1 customer(s)" in out
    assert not [p for p in vendor.layout.inbox.iterdir() if p.name.startswith(".")]
    code, out, _ = cli("import", *home, "--sftp", url, "--known-hosts", sshd_server.known_hosts)
    assert code == 0 and out.startswith("pulled 0 file(s)") and "imported 0 day(s)" in out
    assert len(customer_days(store.engine)["alpha"]) == 2


def test_two_runs_cannot_import_a_day_twice(
        tmp_path: Path, vendor: VendorConfig, store: VendorStore,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from seatledger.vendor import imports

    master = Master.create(tmp_path, "alpha", vendor, store)
    master.work(1)
    master.export(vendor.layout.inbox)
    now = START + timedelta(days=1, hours=2)
    first = VendorImport(vendor, store, now=now).run([vendor.layout.inbox])
    # A second run that read the store's state before the first one committed: the store's
    # constraints still keep every record once.
    monkeypatch.setattr(VendorImport, "_known_manifests", lambda self: {})
    monkeypatch.setattr(imports._Chain, "load",
                        classmethod(lambda cls, conn, customer: cls(customer, {}, {}, None)))
    with pytest.raises(VendorImportError, match="another import run imported the same days"):
        VendorImport(vendor, store, now=now).run([vendor.layout.inbox])
    monkeypatch.undo()
    assert customer_days(store.engine) == {"alpha": [day(0)]}
    assert len(stored(vendor, store, "alpha")) == first.records > 0
