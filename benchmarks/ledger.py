"""Ledger benchmark: commit rate by batch size, bytes per event, verification and replay rates.

Prints one JSON object. SQLite file store, AES-GCM at rest, durable commits (WAL, the
library's synchronous=FULL default). Two stores are measured for size and verification: one
written at batch 100, and one written one record per commit a second of ledger time apart
(what a lightly loaded master writes: every real one). Then the longest commit while a
snapshot is taken with 10,000 seats held. Usage:
python benchmarks/ledger.py [--events N] [--batch-one-events N] [--seats N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

# This file is named after the package it measures; drop its own folder from the import
# path so that "ledger" means the package, not this script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from ledger import AcquireSeat, LedgerApp, ManualClock, ReleaseSeat  # noqa: E402

AGENTS = 2000  # users cycling through log-on / log-off


def open_app(path: Path, clock: ManualClock, keys: dict[str, object]) -> LedgerApp:
    return LedgerApp(f"sqlite:///{path}", clock=clock, checkpoint_file=path.with_suffix(".cp"),
                     **keys)  # type: ignore[arg-type]


def workload(app: LedgerApp, clock: ManualClock, events: int, batch: int, offset: int = 0) -> float:
    """Alternate log-ons and log-offs of AGENTS users over four sites; returns seconds."""
    sites = ("north", "south", "east", "west")
    held: set[int] = set()
    commands = []
    n = offset
    start = time.perf_counter()
    done = 0
    while done < events:
        user = n % AGENTS
        site = sites[user % 4]
        if user in held:
            commands.append(ReleaseSeat(site, f"agent{user}"))
            held.discard(user)
        else:
            commands.append(AcquireSeat(site, f"agent{user}", "PRED" if user % 5 else "ACD",
                                        f"tenant{user % 3}", f"campaign{user % 7}"))
            held.add(user)
        n += 1
        if len(commands) == batch:
            clock.advance(seconds=1)
            app.execute(commands)
            done += len(commands)
            commands = []
    return time.perf_counter() - start


def fresh(tmp: Path, name: str, keys: dict[str, object]) -> tuple[LedgerApp, ManualClock]:
    clock = ManualClock()
    app = open_app(tmp / f"{name}.db", clock, keys)
    app.issue_licence(customer="Bench", limits={"PRED": 1600, "ACD": 400})
    for site in ("north", "south", "east", "west"):
        app.enrol_site(site)
    return app, clock


def store_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal"), db.with_suffix(".cp"))
               if p.exists())


def timed_verify(app: LedgerApp) -> int:
    start = time.perf_counter()
    report = app.verify()
    seconds = time.perf_counter() - start
    assert report.ok, report.problem
    return round(report.records / seconds)


def batch_one_store(tmp: Path, keys: dict[str, object], events: int) -> dict[str, object]:
    """A store written one record per commit: its size all-in and its verification rate."""
    app, clock = fresh(tmp, "batch1-store", keys)
    workload(app, clock, events, 1)
    app.close()
    db = tmp / "batch1-store.db"
    app = open_app(db, clock, keys)
    total = app.max_id()
    size = store_bytes(db)
    with sqlite3.connect(db) as conn:
        signed = conn.execute("SELECT COUNT(*) FROM seal_checkpoints").fetchone()[0]
    result = {"events": total, "bytes_per_event_all_in": round(size / total, 1),
              "mb_per_agent_6_months_at_10_events_per_day": round(size / total * 10 * 182 / 1e6, 4),
              "signed_checkpoint_rows": signed,
              "verify_records_per_second": timed_verify(app)}
    app._app.close()
    return result


def snapshot_commits(tmp: Path, keys: dict[str, object], seats: int,
                     when_idle: bool) -> dict[str, object]:
    """Commit latencies at batch 1 with ``seats`` seats held, across several snapshots (one
    every 1,000 events). A master's timer ticks in between (every 100 commits here); with
    ``when_idle`` the snapshot is taken by a tick that records nothing."""
    clock = ManualClock()
    db = tmp / f"snapshots-{when_idle}.db"
    app = LedgerApp(f"sqlite:///{db}", clock=clock, checkpoint_file=db.with_suffix(".cp"),
                    snapshot_every=1000, snapshot_when_idle=when_idle,
                    **keys)  # type: ignore[arg-type]
    app.issue_licence(customer="Bench", limits={"PRED": seats + 100, "ACD": 100})
    app.enrol_site("north")
    for first in range(0, seats, 500):
        app.execute([AcquireSeat("north", f"held{i}", "PRED")
                     for i in range(first, min(seats, first + 500))])
    app.tick()
    times, ticks = [], []
    for i in range(3000):
        clock.advance(seconds=1)
        command = (AcquireSeat("north", f"x{i // 2}", "PRED") if i % 2 == 0
                   else ReleaseSeat("north", f"x{i // 2}"))
        start = time.perf_counter()
        app.execute([command])
        times.append(time.perf_counter() - start)
        if i % 100 == 99:
            start = time.perf_counter()
            app.tick()
            ticks.append(time.perf_counter() - start)
    app.close()
    times.sort()
    return {"seats_held": seats, "commits": len(times),
            "median_commit_ms": round(times[len(times) // 2] * 1000, 2),
            "p99_commit_ms": round(times[int(len(times) * 0.99)] * 1000, 2),
            "longest_commit_ms": round(times[-1] * 1000, 2),
            "longest_idle_tick_ms": round(max(ticks) * 1000, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000,
                        help="events in the store used for size, verification and replay")
    parser.add_argument("--batch-one-events", type=int, default=50_000,
                        help="events in the store written one per commit")
    parser.add_argument("--seats", type=int, default=10_000,
                        help="seats held while snapshots are taken")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="seatledger-bench-"))
    keys = {"key": os.urandom(32), "signing_key": Ed25519PrivateKey.generate()}
    result: dict[str, object] = {"benchmark": "ledger", "python": platform.python_version(),
                                 "store": "sqlite file, AES-GCM, WAL, synchronous=FULL"}
    try:
        rates = {}
        for batch, events in ((1, 2_000), (10, 10_000), (100, 50_000), (1000, 100_000)):
            app, clock = fresh(tmp, f"batch{batch}", keys)
            seconds = workload(app, clock, events, batch)
            rates[str(batch)] = round(events / seconds)
            app.close()
        result["events_per_second_by_batch"] = rates

        app, clock = fresh(tmp, "size", keys)
        workload(app, clock, args.events, 100)
        app.close()
        db = tmp / "size.db"
        app = open_app(db, clock, keys)
        total = app.max_id()
        size = store_bytes(db)
        result["store_events"] = total
        result["bytes_per_event_all_in"] = round(size / total, 1)
        result["mb_per_agent_6_months_at_10_events_per_day"] = round(size / total * 10 * 182 / 1e6, 4)

        result["verify_records_per_second"] = timed_verify(app)

        start = time.perf_counter()
        licence = app.replay()
        seconds = time.perf_counter() - start
        assert licence is not None and licence.pools == app.licence.pools
        result["replay_events_per_second"] = round(total / seconds)
        app._app.close()

        start = time.perf_counter()
        app = open_app(db, clock, keys)
        result["open_with_snapshot_seconds"] = round(time.perf_counter() - start, 3)
        app._app.close()
        result["batch_1_store"] = batch_one_store(tmp, keys, args.batch_one_events)
        result["commits_while_snapshotting"] = {
            "snapshot_after_commit": snapshot_commits(tmp, keys, args.seats, False),
            "snapshot_when_idle": snapshot_commits(tmp, keys, args.seats, True)}
        result["targets"] = {"events_per_second_batch_100": 40_000, "bytes_per_event": 140,
                             "verify_records_per_second": 250_000,
                             "replay_events_per_second": 150_000,
                             "batch_1_store": {"bytes_per_event_all_in": 120,
                                               "verify_records_per_second": 200_000},
                             "longest_commit_ms_while_snapshotting": 5}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
