"""Tampering with the SQLite file directly: `seatledger audit verify` exits 1 naming the record."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from ledger import LICENCE_ID, AcquireSeat, LedgerApp, Licence, ManualClock, StoreError
from seatledger.cli.main import main
from seatledger.config.settings import load_config
from seatledger.config.store import open_ledger
from seatledger.services.datadir import init_data_dir

SEATS = 12


@pytest.fixture
def data_dir(tmp_path: Path, clock: ManualClock) -> Path:
    """A data directory whose last records were each committed on their own."""
    root = tmp_path / "data"
    init_data_dir(root, history=False)
    app = open_ledger(load_config(root), clock=clock)
    app.issue_licence(customer="Acme", limits={"PRED": 100, "ACD": 20})
    app.enrol_site("north")
    for i in range(SEATS):
        clock.advance(minutes=1)
        app.execute([AcquireSeat("north", f"u{i}", "PRED")])
    app._app.close()  # no closing checkpoint: the tail stays plain seat events
    return root


def verify(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object], str]:
    code = main(["audit", "verify", "--json", "--data-dir", str(root)])
    out, err = capsys.readouterr()
    return code, json.loads(out.strip().splitlines()[-1]), err


def db(root: Path) -> sqlite3.Connection:
    return sqlite3.connect(root / "ledger.db", isolation_level=None)


def last_id(root: Path) -> int:
    with db(root) as conn:
        return int(conn.execute("SELECT MAX(id) FROM events").fetchone()[0])


def test_an_untouched_store_verifies(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, _ = verify(data_dir, capsys)
    assert code == 0 and report["ok"] is True and report["records"] == last_id(data_dir)


def test_one_changed_byte_is_named(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with db(data_dir) as conn:
        state = bytearray(conn.execute("SELECT state FROM events WHERE id = 7").fetchone()[0])
        state[20] ^= 0x01
        conn.execute("UPDATE events SET state = ? WHERE id = 7", (bytes(state),))
    code, report, err = verify(data_dir, capsys)
    assert code == 1
    assert report["first_bad_record"] == 7
    assert "fails authentication" in str(report["reason"])
    assert err.count("\n") == 1 and "record 7" in err


def test_a_deleted_row_is_named(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with db(data_dir) as conn:
        conn.execute("DELETE FROM events WHERE id = 5")
    code, report, _ = verify(data_dir, capsys)
    assert code == 1 and report["first_bad_record"] == 5 and "missing" in str(report["reason"])


def test_swapped_states_are_named(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with db(data_dir) as conn:
        a = conn.execute("SELECT state FROM events WHERE id = 8").fetchone()[0]
        b = conn.execute("SELECT state FROM events WHERE id = 9").fetchone()[0]
        conn.execute("UPDATE events SET state = ? WHERE id = 8", (b,))
        conn.execute("UPDATE events SET state = ? WHERE id = 9", (a,))
    code, report, _ = verify(data_dir, capsys)
    assert code == 1 and report["first_bad_record"] == 8


def test_swapped_whole_rows_are_named(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with db(data_dir) as conn:
        conn.execute("UPDATE events SET id = -1 WHERE id = 10")
        conn.execute("UPDATE events SET id = 10 WHERE id = 11")
        conn.execute("UPDATE events SET id = 11 WHERE id = -1")
    code, report, _ = verify(data_dir, capsys)
    assert code == 1 and report["first_bad_record"] == 10
    assert "follows version" in str(report["reason"])


def test_a_truncated_tail_is_named(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    last = last_id(data_dir)
    with db(data_dir) as conn:
        conn.execute("DELETE FROM events WHERE id = ?", (last,))
    code, report, _ = verify(data_dir, capsys)
    assert code == 1 and report["first_bad_record"] == last
    assert "truncated" in str(report["reason"])


def test_deleting_the_last_row_then_appending_a_new_event_is_named(
        data_dir: Path, capsys: pytest.CaptureFixture[str], clock: ManualClock) -> None:
    last = last_id(data_dir)
    config = load_config(data_dir)
    app = open_ledger(config, clock=clock)
    version = app.licence.version
    app._app.close()
    with db(data_dir) as conn:
        conn.execute("DELETE FROM events WHERE id = ?", (last,))
    # The ledger itself refuses to write to a store whose seal no longer matches...
    with pytest.raises(StoreError, match="altered"):
        open_ledger(config, clock=clock)
    # ...so the forger, who holds the keys, writes a well-formed record by hand.
    forged = Licence.SeatGranted(
        originator_id=LICENCE_ID, originator_version=version,
        timestamp=clock.now() + timedelta(minutes=5), occurred_at=clock.now() + timedelta(minutes=5),
        site="north", user="forged", agent_class="PRED", tenant="", campaign="", seat=999,
        overuse=False, offline=False, seq=None)
    mapper = LedgerApp.__new__(LedgerApp)  # only for its mapper: build one the same way
    from ledger.persistence.codec import CompactTranscoder, RowCipher, SealedMapper
    from ledger.persistence.store import load_key_file

    mapper = SealedMapper(CompactTranscoder(), RowCipher(load_key_file(config.layout.at_rest_key)),
                          True)
    stored = mapper.to_stored_event(forged)
    with db(data_dir) as conn:
        topic = conn.execute("SELECT id FROM topics WHERE topic = ?", (stored.topic,)).fetchone()[0]
        conn.execute("INSERT INTO events (id, originator, version, topic, state) "
                     "VALUES (?, 1, ?, ?, ?)", (last, version, topic, stored.state))
    code, report, _ = verify(data_dir, capsys)
    assert code == 1 and report["first_bad_record"] == last
    assert "does not match the checkpoint" in str(report["reason"])


def test_the_real_command_exits_1_with_one_line(data_dir: Path) -> None:
    with db(data_dir) as conn:
        conn.execute("DELETE FROM events WHERE id = 3")
    proc = subprocess.run([sys.executable, "-m", "seatledger.cli", "audit", "verify",
                           "--data-dir", str(data_dir)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("seatledger: audit verify failed: record 3: missing "
                                   "(the next stored record is 4)")
    assert "Traceback" not in proc.stderr
