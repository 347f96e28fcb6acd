"""Verifying and replaying a real SQLite store on two cores (ledger.seal.ahead,
ledger.persistence.forked): a forked child opens the later half of the records for a
verification, or decrypts the licence's records ahead of a replay; the report or the licence
is the one a single core gives, a child that fails or gets stuck costs nothing but time, and
the child dies with its parent, even a SIGKILLed one.

Each runs in a process of its own here (a probe): a child is forked only from a process with
no other thread, and the test process may have some (servers of other tests).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from ledger import AcquireSeat, LedgerApp, ManualClock, ReleaseSeat
from ledger.seal.seal import PAGE

RECORDS = 6 * PAGE + 300

PROBE = r"""
import json, os, sys, time
from pathlib import Path
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
import ledger.application as application
from ledger import LedgerApp, ManualClock
from ledger.persistence import forked
from ledger.seal import ahead
from ledger.seal.seal import PAGE

db, key, signing, mode = sys.argv[1:5]
application.SPLIT_ABOVE = 4 * PAGE
seen = {"handed": 0, "forked": False}
start, pages = ahead.ForkedAhead.start, ahead.ForkedAhead.pages

def spied_start(self, stops):
    start(self, stops)
    seen["forked"] = True
    seen["child"] = self._child._pid
    if mode == "hang":
        print(json.dumps({"child": self._child._pid}), flush=True)

def spied_pages(self):
    for page in pages(self):
        seen["handed"] += 1
        yield page

def fail(self, stops):
    raise RuntimeError("the child fails")

def hang(self, stops):
    time.sleep(60)

ahead.ForkedAhead.start, ahead.ForkedAhead.pages = spied_start, spied_pages
if mode == "one":
    application.can_fork = lambda: False
elif mode == "fail":
    ahead.ForkedAhead._open = fail
elif mode in ("hang", "stuck"):
    ahead.ForkedAhead._open = hang
    forked.MIN_PATIENCE = 0.5
app = LedgerApp(f"sqlite:///{db}", key=bytes.fromhex(key),
                signing_key=Ed25519PrivateKey.from_private_bytes(bytes.fromhex(signing)),
                clock=ManualClock(), checkpoint_file=Path(db).with_suffix(".cp"), read_only=True)
report = app.verify()
problem = report.problem
try:
    os.waitpid(seen.get("child", 0) or -1, os.WNOHANG)
    reaped = False
except ChildProcessError:
    reaped = True
print(json.dumps({"problem": [problem.record, problem.reason] if problem else None,
                  "records": report.records, "root": report.root.hex(),
                  "checkpoints": report.checkpoints, "notes": report.signed_notes,
                  "handed": seen["handed"], "forked": seen["forked"], "reaped": reaped}))
"""


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A store of RECORDS records written 100 to a commit, with recorded checkpoints."""
    db = tmp_path_factory.mktemp("two-cores") / "ledger.db"
    keys: dict[str, Any] = {"key": os.urandom(32), "signing_key": Ed25519PrivateKey.generate()}
    clock = ManualClock()
    app = LedgerApp(f"sqlite:///{db}", clock=clock, checkpoint_file=db.with_suffix(".cp"),
                    checkpoint_every=1000, **keys)
    app.issue_licence(customer="Acme", limits={"PRED": 5000})
    app.enrol_site("north")
    user = 0
    while app.max_id() < RECORDS:
        clock.advance(seconds=1)
        app.execute([AcquireSeat("north", f"u{user + i}", "PRED") if (user // 100) % 2 == 0
                     else ReleaseSeat("north", f"u{user + i - 100}") for i in range(100)])
        user += 100
    app.close()
    return db, keys


def copy_of(made: tuple[Path, dict[str, Any]], tmp_path: Path) -> Path:
    db = tmp_path / "ledger.db"
    source = sqlite3.connect(made[0])
    target = sqlite3.connect(db)
    source.backup(target)
    source.close()
    target.close()
    cp = made[0].with_suffix(".cp")
    db.with_suffix(".cp").write_bytes(cp.read_bytes())
    return db


def alter(db: Path, record: int, change: Callable[[bytes], bytes]) -> None:
    with sqlite3.connect(db) as conn:
        (state,) = conn.execute("SELECT state FROM events WHERE id = ?", (record,)).fetchone()
        conn.execute("UPDATE events SET state = ? WHERE id = ?", (change(state), record))
    conn.close()


def probe_args(db: Path, keys: dict[str, Any], mode: str) -> list[str]:
    signing = keys["signing_key"].private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return [sys.executable, "-c", PROBE, str(db), keys["key"].hex(), signing.hex(), mode]


def probe(db: Path, keys: dict[str, Any], mode: str) -> dict[str, Any]:
    done = subprocess.run(probe_args(db, keys, mode), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def report_of(result: dict[str, Any]) -> tuple[Any, ...]:
    return (result["problem"], result["records"], result["root"], result["checkpoints"],
            result["notes"])


def test_a_sound_store_verifies_on_two_cores_as_on_one(
        made: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    db = copy_of(made, tmp_path)
    one, two = probe(db, made[1], "one"), probe(db, made[1], "two")
    assert two["problem"] is None and two["records"] >= RECORDS
    assert report_of(two) == report_of(one)
    assert two["notes"] >= 5
    assert (one["forked"], two["forked"], two["reaped"]) == (False, True, True)
    assert two["handed"] == -(-(two["records"] - 3 * PAGE) // PAGE)  # every page after the split


@pytest.mark.parametrize("record", [3 * PAGE + 1, 4 * PAGE + 517, RECORDS])
def test_a_record_altered_after_the_split_is_named_as_on_one_core(
        made: tuple[Path, dict[str, Any]], tmp_path: Path, record: int) -> None:
    db = copy_of(made, tmp_path)
    alter(db, record, lambda state: state[:-1] + bytes([state[-1] ^ 1]))
    one, two = probe(db, made[1], "one"), probe(db, made[1], "two")
    assert report_of(two) == report_of(one)
    assert one["problem"] == [record, "state fails authentication: altered, or moved from "
                                      "another record"]
    assert two["forked"] and two["handed"] == (record - 1 - 3 * PAGE) // PAGE


def test_a_record_removed_after_the_split_is_named_as_on_one_core(
        made: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    db = copy_of(made, tmp_path)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM events WHERE id = ?", (5 * PAGE + 1,))
    one, two = probe(db, made[1], "one"), probe(db, made[1], "two")
    assert report_of(two) == report_of(one)
    assert one["problem"] == [5 * PAGE + 1, f"missing (the next stored record is {5 * PAGE + 2})"]


def test_a_child_that_fails_leaves_the_report_as_it_was(
        made: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    db = copy_of(made, tmp_path)
    alter(db, 4 * PAGE + 3, lambda state: bytes([state[0] ^ 1]) + state[1:])
    one, failed = probe(db, made[1], "one"), probe(db, made[1], "fail")
    assert report_of(failed) == report_of(one)
    assert one["problem"][0] == 4 * PAGE + 3
    assert (failed["forked"], failed["handed"], failed["reaped"]) == (True, 0, True)


def test_a_stuck_child_is_killed_and_the_records_verified_without_it(
        made: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    db = copy_of(made, tmp_path)
    alter(db, 5 * PAGE + 77, lambda state: state[:-1] + bytes([state[-1] ^ 1]))
    one = probe(db, made[1], "one")
    began = time.monotonic()
    stuck = probe(db, made[1], "stuck")
    assert time.monotonic() - began < 20  # the child sleeps a minute
    assert report_of(stuck) == report_of(one)
    assert one["problem"][0] == 5 * PAGE + 77
    assert (stuck["forked"], stuck["handed"], stuck["reaped"]) == (True, 0, True)


def test_the_child_dies_with_a_sigkilled_parent(
        made: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    db = copy_of(made, tmp_path)
    parent = subprocess.Popen(probe_args(db, made[1], "hang"), stdout=subprocess.PIPE,
                              text=True)
    try:
        assert parent.stdout is not None
        child = json.loads(parent.stdout.readline())["child"]
        os.kill(child, 0)  # alive while its parent is
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{child}").exists() and \
                Path(f"/proc/{child}/stat").read_text().split()[2] != "Z":
            time.sleep(0.05)
        gone = not Path(f"/proc/{child}").exists() or \
            Path(f"/proc/{child}/stat").read_text().split()[2] == "Z"
        assert gone, f"the child {child} outlived its parent"
    finally:
        if parent.poll() is None:
            parent.send_signal(signal.SIGKILL)
            parent.wait()


# ------------------------------------------------------------------------------ replay
REPLAY_PROBE = r"""
import json, sys
from pathlib import Path
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
import ledger.application as application
from ledger import LedgerApp, ManualClock
from ledger.persistence import forked

db, key, signing, mode = sys.argv[1:5]
application.SPLIT_ABOVE, application.DECRYPTED_PAGE = 4096, 1024
seen = {"forked": False, "sent": 0}
chunks, open_rows = forked.Child.chunks, application.open_rows

def spied_chunks(self, patience=forked.MIN_PATIENCE):
    seen["forked"] = True
    for chunk in chunks(self, patience):
        seen["sent"] += 1
        yield chunk

calls = []
def failing_open_rows(*args):
    calls.append(1)
    if len(calls) > 2:
        raise RuntimeError("the child fails")
    return open_rows(*args)

forked.Child.chunks = spied_chunks
if mode == "one":
    application.can_fork = lambda: False
elif mode == "fail":
    application.open_rows = failing_open_rows
app = LedgerApp(f"sqlite:///{db}", key=bytes.fromhex(key),
                signing_key=Ed25519PrivateKey.from_private_bytes(bytes.fromhex(signing)),
                clock=ManualClock(), checkpoint_file=Path(db).with_suffix(".cp"), read_only=True)
try:
    licence = app.replay()
    result = {"version": licence.version, "pools": repr(licence.pools),
              "seats": sorted(licence.sites["north"].seats), "error": None}
except Exception as e:
    result = {"error": f"{type(e).__name__}: {e}"}
print(json.dumps({**result, **seen}))
"""


def replay_probe(db: Path, keys: dict[str, Any], mode: str) -> dict[str, Any]:
    args = probe_args(db, keys, mode)
    args[2] = REPLAY_PROBE
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def without_spies(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in ("forked", "sent")}


def test_a_replay_on_two_cores_rebuilds_the_licence_one_core_does(
        made: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    db = copy_of(made, tmp_path)
    one, two = replay_probe(db, made[1], "one"), replay_probe(db, made[1], "two")
    assert one["error"] is None and without_spies(two) == without_spies(one)
    assert one["version"] >= RECORDS - 10 and len(one["seats"]) > 0
    assert (one["forked"], two["forked"]) == (False, True)
    assert two["sent"] == -(-(RECORDS + 40) // 1024)  # every page of ids, by the child


def test_a_record_that_fails_authentication_stops_both_replays_alike(
        made: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    db = copy_of(made, tmp_path)
    alter(db, 3 * 1024 + 200, lambda state: state[:-1] + bytes([state[-1] ^ 1]))
    one, two = replay_probe(db, made[1], "one"), replay_probe(db, made[1], "two")
    assert two["error"] == one["error"]
    assert one["error"].startswith("MapperDeserialisationError: event ")
    assert "state fails authentication" in one["error"]
    assert two["sent"] == 3  # the pages before it


def test_a_decrypting_child_that_fails_leaves_the_replay_as_it_was(
        made: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    db = copy_of(made, tmp_path)
    one, failed = replay_probe(db, made[1], "one"), replay_probe(db, made[1], "fail")
    assert one["error"] is None and without_spies(failed) == without_spies(one)
    assert (failed["forked"], failed["sent"]) == (True, 2)
