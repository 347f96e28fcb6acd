"""The leadership lease and fenced commits, on the real PostgreSQL: a term only grows, a
master that lost its lease cannot commit (nothing of the batch is recorded), a dead holder
is replaced at once, a silent one after its lease expires, and of masters racing for a free
lease exactly one wins."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from ledger import AcquireSeat, Grant, LedgerApp
from ledger.persistence.fencing import FencedError
from seatledger.master.lease import Lease, LeaseState, read_lease


def _lease(url: str, holder: str, seconds: float = 5.0) -> Lease:
    lease = Lease(url, holder, lease_seconds=seconds)
    lease.prepare()
    return lease


def _acquire_within(lease: Lease, seconds: float) -> LeaseState | None:
    """Try to take the lease as a standby does (every 50 ms here) for ``seconds``."""
    deadline = time.monotonic() + seconds
    while (state := lease.try_acquire()) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return state


def _licensed(open_ledger: Callable[..., LedgerApp], url: str, lease: Lease) -> LedgerApp:
    app = open_ledger(url, fence=lease.fence)
    app.issue_licence(customer="Acme", limits={"PRED": 100, "ACD": 20})
    app.enrol_site("north")
    return app


def test_a_master_whose_lease_was_taken_commits_nothing(
        pg_url: str, open_ledger: Callable[..., LedgerApp]) -> None:
    first, second = _lease(pg_url, "a"), _lease(pg_url, "b")
    try:
        taken = first.try_acquire()
        assert taken is not None and taken.term == 1
        app = _licensed(open_ledger, pg_url, first)
        [granted] = app.execute([AcquireSeat("north", "u1", "PRED")])
        assert isinstance(granted, Grant)
        assert second.try_acquire() is None  # the holder's session is alive, its lease too

        first.close()  # the holder's session ends, as when its process is killed
        took = _acquire_within(second, 2.0)  # its server process takes a moment to exit
        assert took is not None and took.term == 2 and took.holder == "b"

        before = app.max_id()
        with pytest.raises(FencedError):
            app.execute([AcquireSeat("north", "u2", "PRED")])
        assert app.max_id() == before
        assert first.renew() is False

        reader = open_ledger(pg_url, fence=second.fence)
        assert reader.licence.pools["PRED"].in_use == 1  # u1 only: u2 was never recorded
        [granted] = reader.execute([AcquireSeat("north", "u3", "PRED")])  # the new term commits
        assert isinstance(granted, Grant)
        report = reader.verify()
        assert report.ok, report.problem
    finally:
        first.close()
        second.close()


def test_a_silent_holder_is_replaced_only_after_its_lease_expires(pg_url: str) -> None:
    first, second = _lease(pg_url, "a", seconds=1.0), _lease(pg_url, "b", seconds=1.0)
    try:
        assert first.try_acquire() is not None
        assert second.try_acquire() is None
        time.sleep(0.4)
        assert first.renew() is True
        assert second.try_acquire() is None
        time.sleep(1.3)  # a paused holder keeps its session, but not its lease
        took = second.try_acquire()
        assert took is not None and took.term == 2
        assert first.renew() is False
        state = read_lease(pg_url)
        assert state is not None and state.holder == "b" and state.live and state.term == 2
    finally:
        first.close()
        second.close()


def test_masters_racing_for_a_free_lease_elect_exactly_one(pg_url: str) -> None:
    leases = [_lease(pg_url, f"m{i}") for i in range(6)]
    results: list[Any] = [None] * len(leases)
    start = threading.Barrier(len(leases))

    def race(i: int) -> None:
        start.wait()
        results[i] = leases[i].try_acquire()

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(leases))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [r for r in results if r is not None]
        assert len(winners) == 1 and winners[0].term == 1
    finally:
        for lease in leases:
            lease.close()


def test_the_released_lease_is_taken_at_once_with_a_higher_term(pg_url: str) -> None:
    first, second = _lease(pg_url, "a"), _lease(pg_url, "b")
    try:
        assert first.try_acquire() is not None
        first.release()
        took = second.try_acquire()
        assert took is not None and took.term == 2
        assert read_lease(pg_url) is not None
    finally:
        first.close()
        second.close()


def test_a_store_without_a_lease_has_no_active_master(pg_url: str,
                                                       open_ledger: Callable[..., LedgerApp]
                                                       ) -> None:
    open_ledger(pg_url).start_trial()
    assert read_lease(pg_url) is None
