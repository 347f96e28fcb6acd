"""Processes that create our tables on one fresh PostgreSQL database at the same moment
(two masters started together, a vendor's import beside its web server) all succeed.

``CREATE TABLE IF NOT EXISTS`` alone is not safe against that: one of them failed with
``duplicate key value violates unique constraint "pg_type_typname_nsp_index"`` (seen in CI
as a master that exited at start-up; without the schema lock this race failed 23 rounds of
30 here). Each round uses a new database, released together from a barrier.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import attrs
import psycopg
import pytest

from ledger import LedgerApp
from seatledger.master.lease import Lease, read_lease
from seatledger.vendor.home import init_vendor_home
from seatledger.vendor.registry import VendorStore

ROUNDS = 4
RACERS = 4
T = TypeVar("T")


@pytest.fixture
def fresh_databases(pg_server_url: str) -> Iterator[Callable[[], str]]:
    """Make a new, empty database on the real server per call; all dropped afterwards."""
    made: list[str] = []

    def make() -> str:
        name = f"r_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        made.append(name)
        return f"{pg_server_url.rsplit('/', 1)[0]}/{name}"

    yield make
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        for name in made:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def at_once(work: Callable[[int], T], ready: Callable[[int], Any] | None = None) -> list[T]:
    """Run ``work(i)`` for each racer in its own thread, released together (after each
    racer's ``ready(i)``, which connects); their results, or the first one's error."""
    start = threading.Barrier(RACERS)

    def race(i: int) -> T:
        if ready is not None:
            ready(i)
        start.wait(timeout=30)
        return work(i)

    with ThreadPoolExecutor(RACERS) as pool:
        futures = [pool.submit(race, i) for i in range(RACERS)]
        return [f.result(timeout=60) for f in futures]


def test_masters_preparing_one_fresh_lease_all_succeed(
        fresh_databases: Callable[[], str]) -> None:
    for _ in range(ROUNDS):
        url = fresh_databases()
        leases = [Lease(url, f"m{i}", lease_seconds=5) for i in range(RACERS)]
        try:
            at_once(lambda i, leases=leases: leases[i].prepare(),  # type: ignore[misc]
                    ready=lambda i, leases=leases: leases[i]._connection())  # type: ignore[misc]
            state = read_lease(url)
            assert state is not None and state.term == 0 and state.holder == ""
        finally:
            for lease in leases:
                lease.close()


def test_ledgers_opening_one_fresh_store_all_succeed(
        fresh_databases: Callable[[], str], tmp_path: Path, keys: dict[str, Any],
        clock: Any) -> None:
    for round_ in range(ROUNDS):
        url = fresh_databases()

        def open_app(i: int, round_: int = round_, url: str = url) -> LedgerApp:
            return LedgerApp(url, **keys, clock=clock,
                             checkpoint_file=tmp_path / f"{round_}.checkpoint")

        apps = at_once(open_app)
        try:
            apps[0].issue_licence(customer="Acme", limits={"PRED": 100})
            reports = [app.verify() for app in apps]
            assert all(r.ok for r in reports), [r.problem for r in reports]
        finally:
            for app in apps:
                app.close()


def test_vendor_stores_opening_one_fresh_database_all_succeed(
        fresh_databases: Callable[[], str], tmp_path: Path) -> None:
    home = init_vendor_home(tmp_path / "vendor", name="Reseller")
    for _ in range(ROUNDS):
        config = attrs.evolve(home, store_url=fresh_databases())
        stores = at_once(lambda i, config=config: VendorStore.open(config))  # type: ignore[misc]
        try:
            stores[0].add_customer("Acme")
            assert [s.customer_names() for s in stores] == [["Acme"]] * RACERS
        finally:
            for store in stores:
                store.close()
