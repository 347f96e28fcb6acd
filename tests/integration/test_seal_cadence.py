"""The seal signs every N records (and the file outside the store by time), not every commit:
a store written one record per commit stays small, and verification stays exact."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import AcquireSeat, LedgerApp, ManualClock, ReleaseSeat
from ledger.persistence.codec import CompactTranscoder, RowCipher, SealedMapper
from ledger.seal import seal
from ledger.seal.checkpoint import open_checkpoint

Open = Callable[..., LedgerApp]
EVERY = 50


def one_per_commit(app: LedgerApp, clock: ManualClock, commits: int,
                   seconds: float = 0.01) -> None:
    """Seat log-ons and log-offs, one command per commit, ``seconds`` of ledger time apart."""
    for i in range(commits):
        clock.advance(seconds=seconds)
        user = f"u{i % 40}"
        if i % 80 < 40:
            app.execute([AcquireSeat("north", user, "PRED")])
        else:
            app.execute([ReleaseSeat("north", user)])


def written(open_ledger: Open, clock: ManualClock, commits: int, **kwargs: object) -> LedgerApp:
    app = open_ledger(**{"sign_every_records": EVERY, **kwargs})
    app.issue_licence(customer="Acme", limits={"PRED": 100, "ACD": 20})
    app.enrol_site("north")
    one_per_commit(app, clock, commits)
    return app


def signed_sizes(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute(
            "SELECT tree_size FROM seal_checkpoints ORDER BY rowid")]


def test_a_store_written_one_record_per_commit_signs_about_every_n_records(
        open_ledger: Open, clock: ManualClock, tmp_path: Path) -> None:
    app = written(open_ledger, clock, 400)
    sizes = signed_sizes(tmp_path / "ledger.db")
    # The first commit after opening, then one per EVERY records.
    assert sizes[0] == 1
    assert all(b - a == EVERY for a, b in zip(sizes[1:], sizes[2:], strict=False))
    assert len(sizes) == 1 + (app.max_id() - 1) // EVERY
    # Only the commits since the latest signed row keep an unsigned row.
    unsigned = [n for n, _, sig, _ in app.recorder.read_seal()[0] if not sig]
    assert unsigned == list(range(sizes[-1] + 1, app.max_id() + 1))
    report = app.verify()
    assert report.ok, report.problem
    assert report.records == app.max_id()
    app.close()  # the tail ends on a signed row, and the rows before it are spent
    reopened = open_ledger(read_only=True)
    assert signed_sizes(tmp_path / "ledger.db")[-1] == reopened.max_id()
    assert not [r for r in reopened.recorder.read_seal()[0] if not r[2]]


def test_the_file_outside_the_store_is_signed_by_ledger_time(
        open_ledger: Open, clock: ManualClock, tmp_path: Path, keys: dict[str, object],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seal, "FILE_INTERVAL", 0.0)  # no wall-clock floor between rewrites
    app = written(open_ledger, clock, 30, sign_every_seconds=1.0)  # 0.01 s apart
    cp_file = tmp_path / "latest.checkpoint"
    public_key = keys["signing_key"].public_key()  # type: ignore[attr-defined]
    noted = open_checkpoint(cp_file.read_text(), "seatledger", public_key).size
    assert noted < app.max_id()  # less than a second of ledger time since the last note
    clock.advance(seconds=1.5)
    app.execute([AcquireSeat("north", "late", "PRED")])
    assert open_checkpoint(cp_file.read_text(), "seatledger", public_key).size == app.max_id()
    clock.advance(seconds=0.1)
    app.execute([ReleaseSeat("north", "late")])
    clock.advance(seconds=1.5)
    app.tick()  # an idle master's tick commits nothing, and signs the tail when it is due
    assert open_checkpoint(cp_file.read_text(), "seatledger", public_key).size == app.max_id()


def test_a_changed_byte_between_two_signatures_is_named(
        open_ledger: Open, clock: ManualClock, tmp_path: Path) -> None:
    app = written(open_ledger, clock, 200)
    app.close()
    sizes = signed_sizes(tmp_path / "ledger.db")
    target = sizes[1] + 7  # inside the span that only the next signed row binds
    assert target not in sizes
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        state = bytearray(conn.execute("SELECT state FROM events WHERE id = ?",
                                       (target,)).fetchone()[0])
        state[20] ^= 0x01
        conn.execute("UPDATE events SET state = ? WHERE id = ?", (bytes(state), target))
    report = open_ledger(read_only=True).verify()
    assert report.problem is not None and report.problem.record == target
    assert "fails authentication" in report.problem.reason


def _forge(app: LedgerApp, key: bytes, record_id: int) -> None:
    """Replace a record with a well-formed one made with the store's keys (a key holder)."""
    n = next(app.notifications(record_id, record_id))
    event = app.decode(n)
    event.__dict__["user"] = "forged"
    stored = SealedMapper(CompactTranscoder(), RowCipher(key), True).to_stored_event(event)
    path = app.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE events SET state = ? WHERE id = ?", (stored.state, record_id))


def test_a_record_replaced_by_a_key_holder_in_the_unsigned_tail_is_named(
        open_ledger: Open, clock: ManualClock, keys: dict[str, object]) -> None:
    app = written(open_ledger, clock, 120)
    signed = signed_sizes(Path(app.url.removeprefix("sqlite:///")))
    target = signed[-1] + 5
    assert target < app.max_id()
    _forge(app, keys["key"], target)  # type: ignore[arg-type]
    app._app.close()  # no close: the tail after the last signed row stays unsigned
    report = open_ledger(read_only=True).verify()
    assert report.problem is not None and report.problem.record == target
    assert "does not match the checkpoint stored" in report.problem.reason


def test_a_rewritten_unsigned_row_is_told_from_an_altered_record(
        open_ledger: Open, clock: ManualClock, tmp_path: Path) -> None:
    app = written(open_ledger, clock, 120)
    app.sealer.flush()  # the file outside the store signs the whole tail
    app._app.close()
    size = signed_sizes(tmp_path / "ledger.db")[-1] + 3
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        conn.execute("UPDATE seal_frontiers SET root = ? WHERE tree_size = ?", (b"\0" * 32, size))
    report = open_ledger(read_only=True).verify()
    assert report.problem is not None and report.problem.record == size
    assert "unsigned checkpoint stored for" in report.problem.reason
    assert "was altered" in report.problem.reason


def test_a_truncated_unsigned_tail_is_named(
        open_ledger: Open, clock: ManualClock, tmp_path: Path) -> None:
    app = written(open_ledger, clock, 120)
    last = app.max_id()
    app._app.close()
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        conn.execute("DELETE FROM events WHERE id = ?", (last,))
    report = open_ledger(read_only=True).verify()
    assert report.problem is not None and report.problem.record == last
    assert "truncated" in report.problem.reason


def test_a_crash_between_signatures_reopens_and_verifies(
        open_ledger: Open, clock: ManualClock, tmp_path: Path) -> None:
    app = written(open_ledger, clock, 130)
    pools = app.licence.pools
    top = app.max_id()
    assert signed_sizes(tmp_path / "ledger.db")[-1] < top  # an unsigned tail
    app._app.close()  # the process dies: no closing checkpoint, no file written at close
    again = open_ledger(sign_every_records=EVERY)
    assert again.max_id() == top and again.licence.pools == pools
    report = again.verify()
    assert report.ok, report.problem
    one_per_commit(again, clock, 10)
    assert signed_sizes(tmp_path / "ledger.db")[-1] == top + 1  # the first commit is signed
    again.close()
    report = open_ledger(read_only=True).verify()
    assert report.ok, report.problem


def test_a_store_signed_at_every_commit_still_verifies(
        open_ledger: Open, clock: ManualClock, tmp_path: Path) -> None:
    """The format written before signatures were spaced out: one signed row per commit."""
    app = written(open_ledger, clock, 60, sign_every_records=1)
    app.close()
    sizes = signed_sizes(tmp_path / "ledger.db")
    assert sizes == sorted(set(sizes)) and len(sizes) >= 60
    report = open_ledger(read_only=True).verify()
    assert report.ok, report.problem
    # ...and a newer writer continues it with spaced signatures.
    more = open_ledger(sign_every_records=EVERY)
    one_per_commit(more, clock, 120)
    more.close()
    reopened = open_ledger(read_only=True)
    report = reopened.verify()
    assert report.ok, report.problem
    assert report.records == reopened.max_id()


@pytest.mark.parametrize("every", [0, -3])
def test_a_cadence_below_one_record_is_refused(open_ledger: Open, every: int) -> None:
    with pytest.raises(ValueError, match="sign_every_records"):
        open_ledger(sign_every_records=every, signing_key=Ed25519PrivateKey.generate())
