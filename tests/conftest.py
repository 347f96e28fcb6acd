"""Fixtures shared by every test: stores (SQLite file and the real PostgreSQL), ledgers, clocks."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import LedgerApp, ManualClock

PG_ENV = "SEATLEDGER_TEST_PG_URL"
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # In CI a skipped test is a failure: every server a test needs is started by .ci/run.
    if os.environ.get("SEATLEDGER_CI") and _skipped and session.exitstatus == 0:
        session.exitstatus = 1
        print(f"\nCI: {len(_skipped)} test(s) skipped, which counts as failure: {_skipped[:5]}")


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.fail(f"{PG_ENV} is not set: run the tests through .ci/run, which starts PostgreSQL")
    return url


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the real server, dropped afterwards."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    base = pg_server_url.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every store contract test runs on the SQLite file and on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def keys() -> dict[str, Any]:
    return {"key": os.urandom(32), "signing_key": Ed25519PrivateKey.generate()}


@pytest.fixture
def open_ledger(tmp_path: Path, clock: ManualClock, keys: dict[str, Any]
                ) -> Iterator[Callable[..., LedgerApp]]:
    """Open (and reopen) a ledger on a URL with the test's keys, clock and checkpoint file."""
    opened: list[LedgerApp] = []

    def _open(url: str | None = None, **kwargs: Any) -> LedgerApp:
        options: dict[str, Any] = {**keys, "clock": clock,
                                   "checkpoint_file": tmp_path / "latest.checkpoint"}
        options.update(kwargs)
        app = LedgerApp(url or f"sqlite:///{tmp_path}/ledger.db", **options)
        opened.append(app)
        return app

    yield _open
    for app in opened:
        app._app.close()  # closing again is harmless when the test closed it already


@pytest.fixture
def ledger(open_ledger: Callable[..., LedgerApp]) -> LedgerApp:
    """A SQLite ledger with a 120-seat licence (PRED=100, ACD=20) and sites north, south."""
    app = open_ledger()
    app.issue_licence(customer="Acme", limits={"PRED": 100, "ACD": 20})
    app.enrol_site("north")
    app.enrol_site("south")
    return app
