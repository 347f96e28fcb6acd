"""What only the vendor can detect: someone holding the data directory's keys rewrites the
store (here: the same history with raised limits) and re-seals it. The local seal cannot
tell - every key it checks with is the rewriter's - but the exports already delivered can."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exporters import ExportError, generate_age_identity
from ledger import AcquireSeat, ConnectSite, ManualClock
from seatledger.config.keys import export_public_key_text
from seatledger.config.settings import Layout, load_config
from seatledger.config.store import open_ledger
from seatledger.services.datadir import init_data_dir
from seatledger.services.export import export_to_folder, import_exports

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _history(root: Path, pred: int, *, create: bool = False) -> None:
    config = init_data_dir(root, origin="seatledger.acme", history=False) if create else load_config(root)
    clock = ManualClock(START)
    with open_ledger(config, clock=clock, create=True) as app:
        app.issue_licence(customer="Acme", limits={"PRED": pred})
        app.enrol_site("north")
        app.execute([ConnectSite("north")])
        for i in range(120):
            app.execute([AcquireSeat("north", f"u{i}", "PRED")])
        clock.advance(hours=30)
        app.execute([AcquireSeat("north", "late", "PRED")])


def test_a_key_holder_rewriting_the_store_passes_local_verify_but_not_the_vendor(
        tmp_path: Path) -> None:
    root = tmp_path / "master"
    _history(root, 100, create=True)  # 120 agents on 100 seats: over-use is on record
    vendor = generate_age_identity()
    master_key = export_public_key_text(Layout(root))
    day1 = tmp_path / "day1"
    with open_ledger(load_config(root), clock=ManualClock(START + timedelta(days=3))) as app:
        export_to_folder(app, Layout(root), day1, [vendor.recipient],
                         through=START.date())
    vendor_dir = tmp_path / "vendor"
    import_exports(sorted(day1.glob("*.jsonl.gz.age")), vendor_dir,
                   identity_text=vendor.file_text, public_key_text=master_key)

    # The rewrite: a new store with the same keys, the licence raised so nothing was over-use.
    for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
        (root / name).unlink(missing_ok=True)
    shutil.rmtree(root / "exports")
    (root / "seal" / "latest.checkpoint").unlink()
    _history(root, 1000)
    with open_ledger(load_config(root), read_only=True) as app:
        assert app.verify().ok  # the local seal is satisfied: the rewriter holds its keys

    later = tmp_path / "later"
    with open_ledger(load_config(root), clock=ManualClock(START + timedelta(days=3))) as app:
        export_to_folder(app, Layout(root), later, [vendor.recipient],
                         through=START.date() + timedelta(days=1))
    # The vendor's copy of day one is not a prefix of the rewritten history: refused.
    with pytest.raises(ExportError, match="not the history"):
        import_exports(sorted(later.glob("*.jsonl.gz.age")), vendor_dir,
                       identity_text=vendor.file_text)
