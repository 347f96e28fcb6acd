"""Overlapped commits (seatledger.master.committer.Committer, the writer process's) on a real
SQLite store: the next batch is decided while the one before is written, answers leave in
order and only once durable, and a failed write runs both batches again, in order, each
recorded once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError

from ledger import AcquireSeat, Grant, LedgerApp, ManualClock, ReleaseSeat
from seatledger.master.committer import Committer
from seatledger.master.ledger_process import RemoteCall


def no_time() -> None:
    """The test's ManualClock is the ledger's time (no DictatedTime to give)."""


class Gate:
    """Wraps the recorder's insert_events: the first write waits until released (and may
    then fail); every step is logged, in order, as it happens."""

    def __init__(self, app: LedgerApp, fail_first: bool = False) -> None:
        self.log: list[str] = []
        self.release = threading.Event()
        self._fail_first = fail_first
        self._writes = 0
        insert = app.recorder.insert_events
        stage = app.stage

        def gated_insert(stored: Any, **kwargs: Any) -> Any:
            self._writes += 1
            n = self._writes
            self.log.append(f"write {n} begins")
            if n == 1:
                assert self.release.wait(10), "the test never released the first write"
                if self._fail_first:
                    self.log.append("write 1 fails")
                    raise OperationalError("disk I/O error")
            result = insert(stored, **kwargs)
            self.log.append(f"write {n} ends")
            return result

        def logged_stage(commands: Any) -> Any:
            self.log.append(f"stage {commands[0].user}")
            if self._writes == 1 and not self.release.is_set():
                # The first write waits: let it go only once this batch was decided.
                threading.Timer(0.05, self.release.set).start()
            return stage(commands)

        app.recorder.insert_events = gated_insert
        app.stage = logged_stage  # type: ignore[method-assign]


@pytest.fixture
def app(tmp_path: Path, clock: ManualClock, keys: dict[str, Any]) -> Iterator[LedgerApp]:
    ledger = LedgerApp(f"sqlite:///{tmp_path}/ledger.db", clock=clock, **keys)
    ledger.issue_licence(customer="c", limits={"PRED": 100})
    ledger.enrol_site("north")
    yield ledger
    ledger.close()


def acquires(*users: str) -> list[Any]:
    return [AcquireSeat("north", u, "PRED") for u in users]


def granted(reply: tuple[Any, ...]) -> list[str]:
    assert reply[0] == "done", reply
    return [o.user for o in reply[1] if isinstance(o, Grant)]


def stored_users(app: LedgerApp) -> list[str]:
    return [e.user for _, e in app.events() if type(e).__name__ == "SeatGranted"]


def test_the_next_batch_is_decided_while_the_one_before_is_written(app: LedgerApp) -> None:
    gate = Gate(app)
    with Committer(app, None) as committer:
        assert committer.batch(acquires("a1", "a2"), no_time) == []  # written in a thread
        assert committer.writing
        replies = committer.batch(acquires("b1"), no_time)
        assert [granted(r) for r in replies] == [["a1", "a2"]]
        # The second batch was decided while the first was still being written.
        assert gate.log.index("stage b1") < gate.log.index("write 1 ends")
        assert granted(committer.finish()) == ["b1"]
        assert not committer.writing
    assert stored_users(app) == ["a1", "a2", "b1"]
    replayed = app.replay()
    assert replayed is not None and replayed.pools == app.licence.pools
    assert sorted(app.licence.sites["north"].seats) == ["a1", "a2", "b1"]


def test_a_failed_write_runs_both_batches_again_in_order_each_once(app: LedgerApp) -> None:
    gate = Gate(app, fail_first=True)
    with Committer(app, None) as committer:
        assert committer.batch(acquires("a1"), no_time) == []
        replies = committer.batch(acquires("b1") + [ReleaseSeat("north", "a1")], no_time)
        # Both answered, in order: a1 granted (its batch run again once the ledger was
        # reloaded), then b1 granted and a1 released: decided again on the store's state.
        assert [r[0] for r in replies] == ["done", "done"]
        assert granted(replies[0]) == ["a1"] and granted(replies[1]) == ["b1"]
        assert not committer.writing
    assert "write 1 fails" in gate.log and gate.log.index("stage b1") < gate.log.index(
        "write 1 fails")
    assert stored_users(app) == ["a1", "b1"]
    assert sorted(app.licence.sites["north"].seats) == ["b1"]
    replayed = app.replay()
    assert replayed is not None and vars(replayed) == vars(app.licence)
    # The licence in memory is the store's: nothing decided on the failed batch survived.
    assert not app.ahead and app.licence.version == replayed.version


def test_a_batch_that_makes_a_checkpoint_due_is_settled_before_the_next(
        tmp_path: Path, clock: ManualClock, keys: dict[str, Any]) -> None:
    ledger = LedgerApp(f"sqlite:///{tmp_path}/cp.db", clock=clock, checkpoint_every=5, **keys)
    try:
        ledger.issue_licence(customer="c", limits={"PRED": 100})
        ledger.enrol_site("north")
        with Committer(ledger, None) as committer:
            assert committer.batch(acquires("a1"), no_time) == []
            # The next batch brings the tree to the checkpoint: it may overlap a1's write,
            # but the batch after it must wait for its settling (which records the
            # checkpoint) before being decided.
            assert [granted(r) for r in committer.batch(acquires("a2", "a3"), no_time)] == [
                ["a1"]]
            replies = committer.batch(acquires("a4"), no_time)
            assert [granted(r) for r in replies] == [["a2", "a3"]]
            assert granted(committer.finish()) == ["a4"]
        # Records 1-2 are the licence and the site: a2 and a3 make five, the checkpoint's
        # cadence, so it is recorded right after them, before a4 was even decided.
        names = [type(e).__name__ for _, e in ledger.events()]
        assert names[2:] == ["SeatGranted"] * 3 + ["AuditCheckpointSigned", "SeatGranted"]
        assert stored_users(ledger) == ["a1", "a2", "a3", "a4"]
        assert ledger.verify().ok
    finally:
        ledger.close()


def test_an_operator_call_waits_for_the_write_in_flight_and_runs_alone(
        app: LedgerApp) -> None:
    calls: list[int] = []

    def run(ledger: LedgerApp, name: str, args: dict[str, Any]) -> Any:
        calls.append(len(ledger.licence.sites["north"].seats))
        return {"ran": name}

    with Committer(app, run) as committer:
        assert committer.batch(acquires("a1"), no_time) == []
        replies = committer.batch([RemoteCall("licence.show", {})], no_time)
        assert [r[0] for r in replies] == ["done", "done"]
        assert granted(replies[0]) == ["a1"] and replies[1][1] == [{"ran": "licence.show"}]
        assert calls == [1]  # it saw the seat granted before it, committed
        assert not committer.writing

