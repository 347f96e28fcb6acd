"""The read models fed by the writer (projections.feed): each commit's records, as the seal
hashed them, reach the follower without it reading or decrypting the store; a gap, a lost
message or a failed commit sends the follower to the store, so the views end as a rebuild
from the log has them, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from eventsourcing.persistence import OperationalError

from ledger import AcquireSeat, LedgerApp, ManualClock, ReleaseSeat, StoreError
from ledger.application import FedRow
from projections import ProjectionRunner
from projections.feed import FeedReceiver, FeedSender, messages
from seatledger.bootstrap import ledger_writer_command
from seatledger.config.settings import load_config
from seatledger.config.store import open_ledger as open_data_dir_ledger
from seatledger.master.ledger_process import LedgerProcess
from seatledger.master.server import trio_now
from seatledger.master.writer import Writer
from tests.conftest import START
from tests.integration.web_world import deploy


@pytest.fixture
def fed_ledger(open_ledger: Callable[..., LedgerApp], store_url: str) -> LedgerApp:
    app = open_ledger(store_url)
    app.issue_licence(customer="Acme", limits={"PRED": 100, "ACD": 20})
    app.enrol_site("north")
    return app


@pytest.fixture
def pair() -> Iterator[tuple[FeedSender, FeedReceiver]]:
    sender = FeedSender()
    receiver = FeedReceiver(sender.connect())
    yield sender, receiver
    sender.close()
    receiver.close()


def as_fed(rows: list[FedRow]) -> tuple[bool, list[tuple[int, bytes, int, str, bytes]]]:
    """Rows as a follower receives them (through the feed's own encoding)."""
    sender = FeedSender()
    receiver = FeedReceiver(sender.connect())
    try:
        assert len(messages(rows, True)) >= 1
        sender.send(rows)
        return receiver.drain()
    finally:
        sender.close()
        receiver.close()


def same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and vars(a) == vars(b)


def run_writer(ledger: LedgerApp, clock: ManualClock, commands: list[Any],
               feed: Callable[[list[FedRow]], None], thread: bool = True) -> None:
    async def main() -> None:
        writer = Writer(ledger, clock, trio_now(START), max_batch=100, queue_size=100,
                        worker_thread=thread, after_batch=lambda outcomes: None)
        writer.attach_feed(feed)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            for command in commands:
                await writer.submit(command)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_the_writer_feeds_each_committed_record_as_the_store_holds_it(
        fed_ledger: LedgerApp, clock: ManualClock,
        pair: tuple[FeedSender, FeedReceiver]) -> None:
    sender, receiver = pair
    first = fed_ledger.max_id() + 1
    run_writer(fed_ledger, clock, [AcquireSeat("north", f"u{i}", "PRED") for i in range(5)]
               + [ReleaseSeat("north", "u0")], sender.send)
    contiguous, rows = receiver.drain()
    assert contiguous and sender.lost == 0
    stored = list(fed_ledger.decoded(first))
    assert [r[0] for r in rows] == [nid for nid, _ in stored]
    fed = list(fed_ledger.decode_fed(rows))
    assert len(fed) == len(stored) >= 6
    assert all(a[0] == b[0] and same(a[1], b[1]) for a, b in zip(fed, stored, strict=True))


def test_a_failed_commit_feeds_nothing_and_the_next_follows_on(
        fed_ledger: LedgerApp, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    fed_ledger.keep_fed = True
    fed_ledger.execute([AcquireSeat("north", "a", "PRED")])
    before = fed_ledger.take_fed()
    insert = fed_ledger.recorder.insert_events

    def full(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("database or disk is full")

    monkeypatch.setattr(fed_ledger.recorder, "insert_events", full)
    with pytest.raises(StoreError, match="disk is full"):
        fed_ledger.execute([AcquireSeat("north", "b", "PRED")])
    assert fed_ledger.take_fed() == []
    monkeypatch.setattr(fed_ledger.recorder, "insert_events", insert)
    fed_ledger.execute([AcquireSeat("north", "c", "PRED")])
    after = fed_ledger.take_fed()
    assert [r[0] for r in after] == [nid for nid, _ in fed_ledger.decoded(before[-1][0] + 1)]
    users = [e.user for _, e in fed_ledger.decode_fed(as_fed(after)[1]) if hasattr(e, "user")]
    assert users == ["c"]


def test_the_follower_applies_fed_records_without_reading_the_store(
        fed_ledger: LedgerApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fed_ledger.keep_fed = True
    with ProjectionRunner(fed_ledger) as runner:
        runner.run_once()
        fed_ledger.take_fed()
        fed_ledger.execute([AcquireSeat("north", "a", "PRED"), AcquireSeat("north", "b", "ACD")])
        fed_ledger.execute([ReleaseSeat("north", "a")])
        rows = fed_ledger.take_fed()

        def unread(start: int = 1) -> Iterator[tuple[int, Any]]:
            raise AssertionError("the follower read the store")

        monkeypatch.setattr(fed_ledger, "decoded", unread)
        assert runner.apply_fed(*as_fed(rows))
        assert set(runner.positions().values()) == {rows[-1][0]}
        assert runner.statistics()["fed_events"] == len(rows)
        assert runner.apply_fed(*as_fed(rows))  # again: nothing new, nothing applied twice
        assert runner.statistics()["fed_events"] == len(rows)
        monkeypatch.undo()
        fed = runner.status()
    with ProjectionRunner(fed_ledger, f"sqlite:///{tmp_path / 'rebuilt.db'}") as rebuilt:
        rebuilt.run_once()
        assert fed is not None and fed == rebuilt.status()
        assert {s.site: s.seats for s in fed.sites}["north"] == 1


def test_records_after_a_gap_are_not_applied_and_the_store_fills_it(
        fed_ledger: LedgerApp, tmp_path: Path) -> None:
    fed_ledger.keep_fed = True
    with ProjectionRunner(fed_ledger) as runner:
        runner.run_once()
        fed_ledger.take_fed()
        fed_ledger.execute([AcquireSeat("north", "a", "PRED")])
        lost = fed_ledger.take_fed()  # never reaches the follower
        fed_ledger.execute([AcquireSeat("north", "b", "PRED")])
        rows = fed_ledger.take_fed()
        start = dict(runner.positions())
        assert not runner.apply_fed(*as_fed(rows))
        assert runner.positions() == start and runner.statistics()["fed_events"] == 0
        assert not runner.apply_fed(False, as_fed(lost + rows)[1])  # ids with gaps (PostgreSQL)
        assert runner.run_once() == len(lost) + len(rows)
        status = runner.status()
    assert status is not None and {s.site: s.seats for s in status.sites}["north"] == 2


def test_a_follower_fed_by_a_running_writer_ends_as_a_rebuild(
        fed_ledger: LedgerApp, clock: ManualClock, tmp_path: Path,
        pair: tuple[FeedSender, FeedReceiver]) -> None:
    """follow() in its thread, the writer feeding it through the socket pair; one message
    lost on the way (the follower reads the store for it)."""
    sender, receiver = pair
    with ProjectionRunner(fed_ledger) as runner:
        runner.run_once()
        follower = threading.Thread(target=runner.follow,
                                    kwargs={"poll_seconds": 0.5, "feed": receiver})
        follower.start()
        try:
            sent = 0

            def feed(rows: list[FedRow]) -> None:
                nonlocal sent
                sent += 1
                if sent != 3:  # the third commit's message is lost
                    sender.send(rows)

            commands: list[Any] = [AcquireSeat("north", f"u{i}", "PRED") for i in range(30)]
            commands += [ReleaseSeat("north", f"u{i}") for i in range(0, 30, 3)]
            run_writer(fed_ledger, clock, commands, feed)
            top = fed_ledger.max_id()
            for _ in range(200):
                if set(runner.positions().values()) == {top}:
                    break
                threading.Event().wait(0.05)
        finally:
            runner.stop_following()
            follower.join(10)
        assert not follower.is_alive()
        assert set(runner.positions().values()) == {top}
        assert 0 < runner.statistics()["fed_events"] < top
        status = runner.status()
    with ProjectionRunner(fed_ledger, f"sqlite:///{tmp_path / 'rebuilt.db'}") as rebuilt:
        rebuilt.run_once()
        assert status is not None and status == rebuilt.status()
        assert {s.site: s.seats for s in status.sites}["north"] == 20


async def test_the_writer_process_feeds_what_its_child_committed(tmp_path: Path) -> None:
    world = deploy(tmp_path, "")
    config = load_config(world.root)
    copy = open_data_dir_ledger(config)
    process = LedgerProcess(ledger_writer_command(config), copy)
    fed: list[FedRow] = []
    process.feed = fed.extend
    await process.start()
    try:
        first = copy.max_id() + 1
        await process.execute([AcquireSeat("north", "u1", "PRED"),
                               AcquireSeat("north", "u2", "ACD")])
        await process.execute([ReleaseSeat("north", "u2")])
    finally:
        await process.aclose()
        copy.close()
    with open_data_dir_ledger(config) as app:
        stored = [(nid, e) for nid, e in app.decoded(first) if nid <= fed[-1][0]]
        decoded = list(app.decode_fed(as_fed(fed)[1]))
    assert [nid for nid, _ in decoded] == [nid for nid, _ in stored]
    assert all(same(a[1], b[1]) for a, b in zip(decoded, stored, strict=True))
    assert [e.user for _, e in decoded if hasattr(e, "user")] == ["u1", "u2", "u2"]


def test_records_before_a_gap_are_applied_and_the_store_gives_the_rest(
        fed_ledger: LedgerApp, monkeypatch: pytest.MonkeyPatch) -> None:
    fed_ledger.keep_fed = True
    with ProjectionRunner(fed_ledger) as runner:
        runner.run_once()
        fed_ledger.take_fed()
        fed_ledger.execute([AcquireSeat("north", "a", "PRED")])
        first = fed_ledger.take_fed()
        fed_ledger.execute([AcquireSeat("north", "b", "PRED")])
        fed_ledger.take_fed()  # lost
        fed_ledger.execute([AcquireSeat("north", "c", "PRED")])
        third = fed_ledger.take_fed()
        assert not runner.apply_fed(*as_fed(first + third))
        assert set(runner.positions().values()) == {first[-1][0]}
        assert runner.statistics()["fed_events"] == len(first)
        assert runner.run_once() == fed_ledger.max_id() - first[-1][0]
        status = runner.status()
    assert status is not None and {s.site: s.seats for s in status.sites}["north"] == 3
