"""A copy of the store gives away no label: the views seal sites, users, tenants, campaigns,
the customer and the free text that names them, under a key derived from the at-rest key.

The raw bytes of ``ledger.db``, of the views' own ``ledger.views.db`` beside it and of their
write-ahead logs are searched for every label the ledger was given, while the answers of the views stay what they are with labels in clear.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import AcquireSeat, LedgerApp, ManualClock, ReleaseSeat, Tick
from projections import ProjectionRunner

DAY = datetime(2026, 3, 2, tzinfo=UTC)
CUSTOMER = "Wonderful Widgets Holdings Ltd"
SITES = ("alpha-ridge-depot", "bravo-harbour-hub")
TENANTS = ("umbrella-tenant-9q", "initech-tenant-4w")
CAMPAIGNS = ("winter-sale-campaign", "renewals-campaign-77")
USERS = tuple(f"agent.{name}" for name in (
    "zoltan.kovacs", "marguerite.okafor", "ingrid.halvorsen", "tobias.lindqvist",
    "priyanka.raman", "esperanza.villalobos", "anneliese.brandt", "octavia.nwosu"))
LABELS = (CUSTOMER, *SITES, *TENANTS, *CAMPAIGNS, *USERS)


def at(hhmm: str) -> datetime:
    hours, minutes = map(int, hhmm.split(":"))
    return DAY + timedelta(hours=hours, minutes=minutes)


def make_app(url: str, clock: ManualClock, key: bytes | None) -> LedgerApp:
    return LedgerApp(url, key=key, signing_key=Ed25519PrivateKey.generate(), clock=clock)


def working_day(app: LedgerApp, clock: ManualClock) -> None:
    """PRED=99, ACD=1; the first site may hold 3 PRED. Seats come and go over a day, one
    request is refused at the site's limit (its detail names the site), a class not
    licensed is refused, and the second site takes ACD over its limit (grace opens)."""
    clock.set(at("06:00"))
    app.issue_licence(customer=CUSTOMER, limits={"PRED": 99, "ACD": 1})
    app.enrol_site(SITES[0], local_limits={"PRED": 3})
    app.enrol_site(SITES[1])
    clock.set(at("08:00"))
    app.execute([AcquireSeat(SITES[0], u, "PRED", TENANTS[0], CAMPAIGNS[0])
                 for u in USERS[:4]])  # the fourth is refused: site limit
    clock.set(at("09:00"))
    app.execute([AcquireSeat(SITES[1], USERS[4], "PRED", TENANTS[1], CAMPAIGNS[1]),
                 AcquireSeat(SITES[1], USERS[5], "ACD", TENANTS[1], CAMPAIGNS[1])])
    app.execute([AcquireSeat(SITES[1], USERS[6], "VIR", TENANTS[1], CAMPAIGNS[0])])
    app.execute([AcquireSeat(SITES[1], USERS[7], "ACD", TENANTS[1], CAMPAIGNS[0])])  # ACD 2
    clock.set(at("12:00"))
    app.execute([ReleaseSeat(SITES[0], USERS[0]), ReleaseSeat(SITES[1], USERS[4])])
    clock.set(at("15:00"))
    app.execute([AcquireSeat(SITES[0], USERS[0], "PRED", TENANTS[0], CAMPAIGNS[1])])
    clock.set(at("17:00"))
    app.execute([ReleaseSeat(SITES[0], u) for u in USERS[1:3]])
    app.execute([Tick()])


def sqlite_files(root: Path) -> dict[str, bytes]:
    """The raw bytes of the store, of the views' file and of whatever SQLite keeps beside
    them."""
    return {p.name: p.read_bytes() for p in sorted(root.glob("ledger.*db*"))}


def found_in(files: dict[str, bytes], labels: Iterable[str]) -> dict[str, list[str]]:
    """File name -> the labels found in it, as UTF-8 (how SQLite stores text)."""
    found = {name: [label for label in labels if label.encode() in data]
             for name, data in files.items()}
    return {name: labels for name, labels in found.items() if labels}


def answers(runner: ProjectionRunner) -> dict[str, Any]:
    """Everything the views answer about the day, as plain values."""
    day = (DAY, DAY + timedelta(days=1))
    return {
        "status": runner.status(),
        "usage": {(by, period): runner.usage(*day, by=by, period=period)
                  for by in ("site", "tenant", "campaign", "class")
                  for period in ("day", "hour")},
        "state": {(t, site): runner.state_at(at(t), site)
                  for t in ("08:30", "09:30", "13:00", "16:00") for site in (None, *SITES)},
        "history": {(u, site): runner.history(u, site) for u in USERS
                    for site in (None, *SITES)},
        "why_refused": {u: runner.why_refused(u) for u in USERS},
        "why_refused_at": runner.why_refused(USERS[3], at=at("08:30"), site=SITES[0]),
    }


@pytest.fixture
def sqlite_root(tmp_path: Path) -> Path:
    return tmp_path


def test_a_copied_store_holds_no_label_in_clear(sqlite_root: Path) -> None:
    clock = ManualClock(at("06:00"))
    with make_app(f"sqlite:///{sqlite_root}/ledger.db", clock, os.urandom(32)) as app:
        working_day(app, clock)
        with ProjectionRunner(app, batch_size=5) as runner:
            runner.run_once()
            # The views hold the day: the search below looks where the labels would be.
            status = runner.status()
            assert status is not None and status.customer == CUSTOMER
            assert {s.site for s in status.sites} == set(SITES)
            assert len(runner.history(USERS[0])) == 3
            assert runner.why_refused(USERS[3])[0].detail.startswith(f"site {SITES[0]} ")
            # While open, much of it is only in the write-ahead log ...
            live = sqlite_files(sqlite_root)
            assert "ledger.views.db-wal" in live
            assert found_in(live, LABELS) == {}
    # ... and once closed, in the store itself.
    closed = sqlite_files(sqlite_root)
    assert closed["ledger.db"] and closed["ledger.views.db"]
    assert found_in(closed, LABELS) == {}


def test_the_search_finds_labels_stored_in_clear(sqlite_root: Path) -> None:
    """The control: without an at-rest key nothing is encrypted, views included, and the
    same search finds every label."""
    clock = ManualClock(at("06:00"))
    with make_app(f"sqlite:///{sqlite_root}/ledger.db", clock, None) as app:
        working_day(app, clock)
        with ProjectionRunner(app) as runner:
            runner.run_once()
    files = sqlite_files(sqlite_root)
    assert sorted({label for labels in found_in(files, LABELS).values()
                   for label in labels}) == sorted(LABELS)


def test_views_in_clear_from_an_older_version_leave_no_trace(sqlite_root: Path) -> None:
    """An older version wrote the views with labels in clear. The runner rebuilds tables of
    another shape; their pages are zeroed and the write-ahead log truncated, so that the
    labels do not stay readable in free pages."""
    clock = ManualClock(at("06:00"))
    db = sqlite_root / "ledger.db"
    views = sqlite_root / "ledger.views.db"
    with make_app(f"sqlite:///{db}", clock, os.urandom(32)) as app:
        working_day(app, clock)
        with ProjectionRunner(app) as runner:
            runner.run_once()
            expected = answers(runner)
        with sqlite3.connect(views) as old:
            # The tables as the older version had them, labels in clear, many pages of them.
            old.execute("DROP TABLE view_pit_refusals")
            old.execute('CREATE TABLE view_pit_refusals (id INTEGER PRIMARY KEY, '
                        'site TEXT, "user" TEXT, tenant TEXT, campaign TEXT, detail TEXT)')
            old.executemany("INSERT INTO view_pit_refusals VALUES (?, ?, ?, ?, ?, ?)", [
                (i, SITES[i % 2], USERS[i % 8], TENANTS[i % 2], CAMPAIGNS[i % 2],
                 f"{CUSTOMER} {i}") for i in range(20_000)])
            old.execute("UPDATE view_tracking SET schema = 'older-version' "
                        "WHERE name = 'point_in_time'")
        old.close()
        assert found_in(sqlite_files(sqlite_root), LABELS) != {}  # it is there to be found
        with ProjectionRunner(app) as upgraded:
            assert upgraded.positions()["point_in_time"] == 0
            upgraded.run_once()
            assert answers(upgraded) == expected
            assert found_in(sqlite_files(sqlite_root), LABELS) == {}
    assert found_in(sqlite_files(sqlite_root), LABELS) == {}


@pytest.fixture(params=["sqlite", "postgres"])
def two_stores(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """Two fresh, empty stores on one backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/sealed.db", f"sqlite:///{tmp_path}/clear.db"
    return str(request.getfixturevalue("pg_url")), str(request.getfixturevalue("pg_url_2"))


@pytest.fixture
def pg_url_2(pg_server_url: str) -> Any:
    """A second fresh PostgreSQL database (``pg_url`` gives one per test)."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield f"{pg_server_url.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_sealed_views_answer_as_views_in_clear(two_stores: tuple[str, str]) -> None:
    """The same day into a store with an at-rest key (labels sealed) and one without
    (labels in clear): every answer is the same, and carries the labels as given."""
    sealed_url, clear_url = two_stores
    results = []
    for url, key in ((sealed_url, os.urandom(32)), (clear_url, None)):
        clock = ManualClock(at("06:00"))
        with make_app(url, clock, key) as app:
            working_day(app, clock)
            with ProjectionRunner(app, batch_size=7) as runner:
                runner.run_once()
                results.append(answers(runner))
                with ProjectionRunner(app) as resumed:  # read back from the tables
                    assert resumed.status() == results[-1]["status"]
    sealed, clear = results
    assert sealed == clear
    usage = sealed["usage"]
    assert {r.key for r in usage[("tenant", "day")].rows} == set(TENANTS)
    assert {r.key for r in usage[("campaign", "hour")].rows} == set(CAMPAIGNS)
    assert {r.key for r in usage[("site", "day")].rows} == set(SITES)
    assert [(s.site, s.user) for s in sealed["state"][("09:30", None)].seats] == sorted(
        [(SITES[0], u) for u in USERS[:3]] + [(SITES[1], u) for u in USERS[4:6]]
        + [(SITES[1], USERS[7])])
    (refused,) = sealed["why_refused"][USERS[3]]
    assert (refused.site, refused.user, refused.reason) == (SITES[0], USERS[3], "site_limit")
    assert sealed["why_refused_at"] == (refused,)
