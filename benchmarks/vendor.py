"""Benchmark: the vendor's import of 20 customers x 30 days x 2,000 events (1.2 M events).

Each customer is a real ledger (SQLite) whose days are seat traffic (1,000 log-ons and 1,000
log-offs a day) recorded through ``LedgerApp``, exported by the project's own export builder
into the vendor's inbox, under a licence the vendor issued for that master. The measured part
is ``seatledger vendor import``'s work (:class:`seatledger.vendor.imports.VendorImport`):
find each export's customer by its signing key, verify every day (signatures, checkpoint,
proofs, hashes), decrypt, recompute every leaf against the signed root, look for findings,
seal every record with the vendor's key and store it (SQLite by default). A second run over
the same inbox shows the cost of doing nothing (idempotence).

With ``SEATLEDGER_BENCH_PG_URL`` (a PostgreSQL server URL) the import is also measured into a
fresh PostgreSQL database there. If ``benchmarks/_vendor_reports.py`` exists, its
``measure(vendor_home)`` runs on the imported home and its keys join the output.

Prints one JSON object. Run from the repository root: ``python benchmarks/vendor.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from exporters import DailyExport, Outbox, generate_signing_key, load_signing_key  # noqa: E402
from exporters.naming import parse_name  # noqa: E402
from exporters.sinks import LocalSink  # noqa: E402
from ledger import AcquireSeat, LedgerApp, ManualClock, ReleaseSeat  # noqa: E402
from seatledger.config.licence_file import LicenceRequest  # noqa: E402
from seatledger.vendor.home import VendorConfig, init_vendor_home  # noqa: E402
from seatledger.vendor.imports import VendorImport  # noqa: E402
from seatledger.vendor.licensing import issue_licence  # noqa: E402
from seatledger.vendor.registry import VendorStore  # noqa: E402

CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", 20))
DAYS = int(os.environ.get("BENCH_DAYS", 30))
EVENTS_PER_DAY = 2_000
USERS = EVENTS_PER_DAY // 2  # each logs on and off once a day
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
GOAL_EVENTS_PER_SECOND = 50_000


def generate_customer(root: Path, name: str, signing_pem: bytes, export_key: Path,
                      recipient: str, inbox: Path) -> int:
    """One customer's master: DAYS days of traffic, every day exported into ``inbox``."""
    signing = serialization.load_pem_private_key(signing_pem, password=None)
    assert isinstance(signing, Ed25519PrivateKey)
    clock = ManualClock(START)
    app = LedgerApp(f"sqlite:///{root / 'ledger.db'}", key=os.urandom(32), signing_key=signing,
                    clock=clock, origin=name, checkpoint_file=root / "latest.checkpoint")
    app.issue_licence(customer=name, limits={"PRED": USERS, "ACD": 100})
    app.enrol_site("north")
    users = [f"agent{i:04d}" for i in range(USERS)]
    for _ in range(DAYS):
        for start in range(0, USERS, 250):
            app.execute([AcquireSeat("north", u, "PRED", "t", "c") for u in users[start:start + 250]])
            clock.advance(seconds=30)
        clock.advance(hours=8)
        for start in range(0, USERS, 250):
            app.execute([ReleaseSeat("north", u) for u in users[start:start + 250]])
            clock.advance(seconds=30)
        clock.set(clock.now().replace(hour=8, minute=0, second=0) + timedelta(days=1))
    exporter = DailyExport(app, LocalSink(inbox), Outbox(root / "exports"),
                           recipients=[recipient], signing_key=load_signing_key(export_key))
    exporter.run(clock.now().date() - timedelta(days=1))
    for path in inbox.glob(f"seatledger-{name}-*"):  # each day arrives at 01:30 the next day
        parsed = parse_name(path.name)
        assert parsed is not None
        stamp = datetime.combine(parsed[1] + timedelta(days=1), dtime(1, 30), UTC).timestamp()
        os.utime(path, (stamp, stamp))
    count: int = app.max_id()
    app.close()
    return count


def generate(work: Path, vendor: VendorConfig) -> int:
    """Every customer, two at a time (each in its own process)."""
    inbox = vendor.layout.inbox
    jobs = []
    with VendorStore.open(vendor) as store:
        for n in range(CUSTOMERS):
            name = f"cust{n:02d}"
            root = work / "masters" / name
            root.mkdir(parents=True)
            signing = Ed25519PrivateKey.generate()
            export_key = generate_signing_key(root / "export.key", root / "export.pub")
            store.add_customer(name)
            request = LicenceRequest.for_master(name, signing.public_key(),
                                                export_key.public_key_text)
            issue_licence(vendor, store, customer=name, request=request,
                          limits={"PRED": USERS}, now=START - timedelta(days=1))
            pem = signing.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
            jobs.append((root, name, pem, root / "export.key", vendor.recipient(), inbox))
    with ProcessPoolExecutor(max_workers=2) as pool:
        return sum(pool.map(generate_customer, *zip(*jobs, strict=True)))


def measure_import(vendor: VendorConfig, now: datetime) -> dict[str, Any]:
    with VendorStore.open(vendor) as store:
        started = time.perf_counter()
        summary = VendorImport(vendor, store, now=now).run([vendor.layout.inbox])
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        again = VendorImport(vendor, store, now=now).run([vendor.layout.inbox])
        rerun = time.perf_counter() - started
    imported = summary.of("imported")
    return {
        "days_imported": len(imported),
        "customers": len({d.customer for d in imported}),
        "events": summary.records,
        "seconds": round(seconds, 2),
        "events_per_second": round(summary.records / seconds),
        "goal_events_per_second": GOAL_EVENTS_PER_SECOND,
        "within_goal": summary.records / seconds >= GOAL_EVENTS_PER_SECOND,
        "findings_opened": len(summary.findings),
        "rerun_seconds": round(rerun, 2),
        "rerun_events": again.records,
    }


def copy_home(vendor: VendorConfig, work: Path, store_url: str) -> VendorConfig:
    """A second vendor home with the same keys and registry, its store on ``store_url``."""
    import shutil

    import sqlalchemy as sa

    from seatledger.vendor.home import load_vendor_config
    from seatledger.vendor.registry import customers, engine_url, licences

    root = work / "vendor-pg"
    shutil.copytree(vendor.root, root, ignore=shutil.ignore_patterns("vendor.db"))
    text = (root / "vendor.toml").read_text()
    (root / "vendor.toml").write_text(text.replace("[store]\n", f'[store]\nurl = "{store_url}"\n'))
    pg = load_vendor_config(root)
    source = sa.create_engine(engine_url(vendor.store_url))
    with VendorStore.open(pg, create=True) as store, source.connect() as conn:
        with store.engine.begin() as target:
            for table in (customers, licences):
                rows = [dict(r._mapping) for r in conn.execute(sa.select(table))]
                target.execute(table.insert(), rows)
    source.dispose()
    return pg


def postgres_database(server_url: str) -> str:
    import psycopg

    name = f"bench_vendor_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{server_url.rsplit('/', 1)[0]}/{name}"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="seatledger-bench-vendor-") as tmp:
        work = Path(tmp)
        vendor = init_vendor_home(work / "vendor", name="bench-reseller")
        started = time.perf_counter()
        events = generate(work, vendor)
        generate_seconds = time.perf_counter() - started
        now = START + timedelta(days=DAYS, hours=3)
        result: dict[str, Any] = {
            "benchmark": "vendor",
            "customers": CUSTOMERS,
            "days": DAYS,
            "events_per_day": EVENTS_PER_DAY,
            "events_generated": events,
            "import_sqlite": measure_import(vendor, now),
            "store_bytes_sqlite": vendor.layout.store_db.stat().st_size,
        }
        pg_server = os.environ.get("SEATLEDGER_BENCH_PG_URL")
        if pg_server:
            result["import_postgresql"] = measure_import(
                copy_home(vendor, work, postgres_database(pg_server)), now)
        reports = Path(__file__).with_name("_vendor_reports.py")
        if reports.exists():
            spec = importlib.util.spec_from_file_location("_vendor_reports", reports)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            for key, value in module.measure(vendor.root).items():
                result[key if key not in result else f"reports_{key}"] = value
        result.update({"generate_seconds": round(generate_seconds, 1),
                       "python": platform.python_version(), "cpus": os.cpu_count()})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
