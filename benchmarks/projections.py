"""Benchmark of the read models; prints ONE JSON object.

1. Builds a store of about 1M events with the ledger's batch API (batches of 1000 commands:
   100 sites, 200 users each toggling their seat, so about 10k seats are held; 30 days of
   virtual time; grace windows open, expire and refuse along the way), and reports how long
   that took.
2. Replays the whole log into all three read models from zero (events per second), with
   the runner's default batch and with batches of 1000 records.
3. Status query latency with about 10k seats held: a fresh read of the live status view.
4. Usage report for 30 days x 100 sites (by site, per day).

Usage: python benchmarks/projections.py [--events N] [--store DIR]
``--store DIR`` keeps the built store in DIR and reuses it on the next run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

# This file is named after the package it measures, and benchmarks/ also holds ledger.py:
# drop this folder from the import path so that the names mean the packages, and measure
# the packages of this checkout (whatever an installed copy may point at).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

import projections  # noqa: E402
from ledger import AcquireSeat, LedgerApp, ManualClock, Refusal, ReleaseSeat, Tick  # noqa: E402
from projections import ProjectionRunner, read_status, usage_report  # noqa: E402

START = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
DAYS = 30
SITES = 100
USERS_PER_SITE = 200
BATCH = 1000
CLASSES = ("PRED",) * 13 + ("ACD",) * 5 + ("PBX", "VIR")
LIMITS = {"PRED": 7000, "ACD": 2600, "PBX": 480, "VIR": 520}


def open_app(root: Path, clock: ManualClock) -> LedgerApp:
    key_file, sign_file = root / "at-rest.key", root / "signing.key"
    if not key_file.exists():
        key_file.write_bytes(os.urandom(32))
        sign_file.write_bytes(Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption()))
    signing = Ed25519PrivateKey.from_private_bytes(sign_file.read_bytes())
    return LedgerApp(f"sqlite:///{root / 'ledger.db'}", key=key_file.read_bytes(),
                     signing_key=signing, clock=clock)


def build(root: Path, target: int, days: int) -> tuple[float, int]:
    """Fill the store with about ``target`` events; returns (seconds, events)."""
    clock = ManualClock(START)
    app = open_app(root, clock)
    rng = random.Random(20260105)
    began = time.perf_counter()
    app.issue_licence(customer="Benchmark Contact Centres", limits=LIMITS,
                      total_pred_acd=9400)
    for s in range(SITES):
        app.enrol_site(f"site{s:03d}")
    batches = max(1, target // BATCH)
    step = timedelta(days=days) / batches
    held: dict[tuple[int, int], bool] = {}
    for _ in range(batches):
        commands: list[object] = [Tick()]
        keys: list[tuple[int, int] | None] = [None]
        for _ in range(BATCH - 1):
            s, u = rng.randrange(SITES), rng.randrange(USERS_PER_SITE)
            site, user = f"site{s:03d}", f"u{s:03d}-{u:03d}"
            if held.pop((s, u), False):
                commands.append(ReleaseSeat(site, user))
            else:
                commands.append(AcquireSeat(site, user, rng.choice(CLASSES),
                                            tenant=f"tenant{s % 7}",
                                            campaign=f"campaign{s % 23}"))
                held[(s, u)] = True
            keys.append((s, u))
        for outcome, key in zip(app.execute(commands), keys, strict=True):
            if isinstance(outcome, Refusal) and key is not None:
                held.pop(key, None)
        clock.advance(seconds=step.total_seconds())
    seconds = time.perf_counter() - began
    events = app.max_id()
    app.close()
    return seconds, events


def _cpu_seconds() -> float:
    """CPU time of this process: the machine may be shared, the wall clock is not ours."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=DAYS, help="virtual days the store spans")
    parser.add_argument("--store", type=Path, default=None)
    args = parser.parse_args()
    root = args.store or Path(tempfile.mkdtemp(prefix="seatledger-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    build_seconds = None
    if not (root / "ledger.db").exists():
        build_seconds, _ = build(root, args.events, args.days)
    clock = ManualClock(START + timedelta(days=args.days))
    app = open_app(root, clock)
    events = app.max_id()

    load = os.getloadavg()
    small = ProjectionRunner(app, batch_size=1000)
    began = time.perf_counter()
    small.rebuild()
    small_seconds = time.perf_counter() - began
    small.close()

    runner = ProjectionRunner(app)
    cpu = _cpu_seconds()
    began = time.perf_counter()
    replayed = runner.rebuild()
    replay_seconds = time.perf_counter() - began
    replay_cpu = _cpu_seconds() - cpu
    held = runner.status()
    seats_held = held.seats_in_use if held is not None else 0

    latencies = []
    for _ in range(30):
        t = time.perf_counter()
        with runner.engine.connect() as conn:
            read_status(conn)
        latencies.append(time.perf_counter() - t)

    usage_times = []
    rows = 0
    for _ in range(3):
        t = time.perf_counter()
        with runner.engine.connect() as conn:
            report = usage_report(conn, START, START + timedelta(days=args.days), by="site")
        usage_times.append(time.perf_counter() - t)
        rows = len(report.rows)
    sites = len({r.key for r in report.rows})
    runner.close()
    app.close()
    print(json.dumps({
        "store": str(root / "ledger.db"),
        "store_bytes": (root / "ledger.db").stat().st_size,
        "views_bytes": sum(p.stat().st_size for p in root.glob("ledger.views.db*")),
        "events": events,
        "build_seconds": None if build_seconds is None else round(build_seconds, 1),
        "build_events_per_second": None if build_seconds is None else round(events / build_seconds),
        "build_note": "ledger batch API, 1000 commands per commit" if build_seconds else
                      "store reused from an earlier run",
        "replay_events": replayed,
        "replay_batch": runner.batch_size,
        "replay_seconds": round(replay_seconds, 2),
        "replay_events_per_second": round(replayed / replay_seconds),
        "replay_target_events_per_second": 60_000,
        "replay_events_per_cpu_second": round(replayed / replay_cpu),
        "replay_batch_1000_events_per_second": round(replayed / small_seconds),
        "seats_held": seats_held,
        "status_query_ms_median": round(statistics.median(latencies) * 1000, 2),
        "status_query_ms_max": round(max(latencies) * 1000, 2),
        "status_target_ms": 50,
        "usage_report_days": args.days,
        "usage_report_sites": sites,
        "usage_report_rows": rows,
        "usage_report_seconds_median": round(statistics.median(usage_times), 3),
        "usage_report_target_seconds": 2,
        "code": str(Path(projections.__file__).resolve().parent.parent),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_average_before_replay": [round(x, 2) for x in load],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
