"""Benchmark: one UTC day of 10,000 agents (about 100,000 events) exported to a local sshd.

Measures the master's daily export of that day -- records read and decoded, JSON lines,
gzip, age encryption, minisign signatures, SFTP upload (OpenSSH's sshd on 127.0.0.1, started
as the integration tests start it), AuditTrailExported recorded -- and the recipient's side:
verify every record against the signed root, then import into a fresh encrypted ledger.

Prints one JSON object. Run from the repository root: ``python benchmarks/export.py``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from exporters import (  # noqa: E402
    DailyExport,
    Outbox,
    Verifier,
    generate_age_identity,
    generate_signing_key,
    import_verified,
)
from exporters.sinks import RetryPolicy, SftpSink  # noqa: E402
from ledger import AcquireSeat, LedgerApp, ManualClock, ReleaseSeat  # noqa: E402
from tests.integration.servers import start_sshd  # noqa: E402

AGENTS = 10_000
SESSIONS = 5  # log-on/log-off pairs per agent: 10 events each
BATCH = 1_000
DAY = datetime(2026, 3, 2, tzinfo=UTC)
TARGET_SECONDS = 3.0


def build_ledger(path: Path) -> tuple[LedgerApp, ManualClock]:
    """A ledger whose first day holds AGENTS agents logging on and off SESSIONS times."""
    clock = ManualClock(DAY + timedelta(seconds=5))
    app = LedgerApp(f"sqlite:///{path}", key=os.urandom(32),
                    signing_key=Ed25519PrivateKey.generate(), clock=clock, origin="bench")
    app.issue_licence(customer="Bench", limits={"PRED": AGENTS, "ACD": 100})
    sites = [f"site{i}" for i in range(10)]
    for site in sites:
        app.enrol_site(site)
    users = [(sites[i % len(sites)], f"agent{i:05d}") for i in range(AGENTS)]
    for _ in range(SESSIONS):
        for start in range(0, AGENTS, BATCH):
            app.execute([AcquireSeat(site, user, "PRED", "tenant", "campaign")
                         for site, user in users[start:start + BATCH]])
            clock.advance(seconds=60)
        for start in range(0, AGENTS, BATCH):
            app.execute([ReleaseSeat(site, user) for site, user in users[start:start + BATCH]])
            clock.advance(seconds=60)
    clock.set(DAY + timedelta(days=1, hours=1, minutes=30))
    return app, clock


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="seatledger-bench-export-") as tmp:
        work = Path(tmp)
        sshd = start_sshd(work / "sshd")
        try:
            result = run(work, sshd)
        finally:
            sshd.stop()
    print(json.dumps(result, indent=2))


def run(work: Path, sshd: object) -> dict[str, object]:
    started = time.perf_counter()
    app, _clock = build_ledger(work / "master.db")
    generate_seconds = time.perf_counter() - started
    events = app.max_id()
    vendor = generate_age_identity()
    key = generate_signing_key(work / "export.key", work / "export.pub")
    day = DAY.date()

    folder = sshd.root / "inbox"  # type: ignore[attr-defined]
    folder.mkdir()
    sink = SftpSink(sshd.host, sshd.port, username=sshd.username,  # type: ignore[attr-defined]
                    known_hosts=sshd.known_hosts, key_file=sshd.client_key,  # type: ignore[attr-defined]
                    remote_dir=str(folder), retry=RetryPolicy(attempts=1))
    exporter = DailyExport(app, sink, Outbox(work / "exports"), recipients=[vendor.recipient],
                           signing_key=key)
    started = time.perf_counter()
    [exported] = exporter.run(day)
    export_seconds = time.perf_counter() - started
    app.close()

    verifier = Verifier((work / "export.pub").read_text(), identity_text=vendor.file_text)
    started = time.perf_counter()
    report = verifier.verify([folder])
    verify_seconds = time.perf_counter() - started
    recipient = LedgerApp(f"sqlite:///{work / 'vendor.db'}", key=os.urandom(32),
                          signing_key=Ed25519PrivateKey.generate(), origin="bench")
    started = time.perf_counter()
    summary = import_verified(recipient, verifier, report)
    import_seconds = time.perf_counter() - started
    manifest = report.days[-1].manifest
    same_root = recipient.sealer.frontier.root() == manifest.checkpoint.root
    recipient.close()

    records = exported.records or 0
    return {
        "benchmark": "export",
        "agents": AGENTS,
        "events_in_day": records,
        "events_in_ledger": events,
        "export": {
            "seconds": round(export_seconds, 3),
            "events_per_second": round(records / export_seconds),
            "target_seconds": TARGET_SECONDS,
            "within_target": export_seconds <= TARGET_SECONDS,
            "jsonl_bytes": manifest.data.jsonl_size,
            "encrypted_bytes": manifest.data.size,
            "sink": sink.description.split("/")[0] + "//127.0.0.1 (OpenSSH sshd)",
            "steps": "read+decode, JSON lines, gzip, age, minisign x2, SFTP upload x4, "
                     "AuditTrailExported",
        },
        "recipient": {
            "verify_seconds": round(verify_seconds, 3),
            "import_seconds": round(import_seconds, 3),
            "seconds": round(verify_seconds + import_seconds, 3),
            "events_per_second": round(summary.records / (verify_seconds + import_seconds)),
            "root_equals_master": same_root,
        },
        "generate_seconds": round(generate_seconds, 1),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    main()
