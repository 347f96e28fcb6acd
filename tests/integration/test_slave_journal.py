"""The slave's journal at rest (issue 9 section 3): a copied journal.db (or its WAL) reveals no
user id, tenant or campaign; the state directory is 0700 and its files 0600; the journal opens
again with its key, or with the site's key when the key file is gone; a journal written in
clear before sealing is converted and keeps every event. SQLite files, so not a unit test."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from seatledger.slave.connector import SlaveConnector, SlaveSettings
from seatledger.slave.errors import JournalKeyError
from seatledger.slave.journal import Journal, JournalEntry, LocalSeat
from seatledger.slave.policy import Remembered, SeatStatus
from seatledger.slave.translate import held_seat, offline_event
from tests.integration.test_wire import World
from transport import HeldSeat, OfflineEvent

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SITE_SECRET = b"-----BEGIN PRIVATE KEY-----\nnot a real key, only its bytes matter\n"
# Values no other part of the file could contain by chance.
USERS = ["agent-zebra-7731", "agent-okapi-4410", "agent-quokka-9902"]
TENANT = "tenant-narwhal-3141"
CAMPAIGN = "campaign-axolotl-2718"
SECRETS = [*USERS, TENANT, CAMPAIGN]


def raw_files(state: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in state.iterdir() if p.name.startswith("journal.db")}


def found(state: Path, values: list[str]) -> list[tuple[str, str]]:
    """(file, value) for each value whose bytes appear in journal.db or its WAL/SHM."""
    files = raw_files(state)
    return [(name, v) for name, data in files.items() for v in values
            if v.encode() in data or v.encode("utf-16-le") in data]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = World(tmp_path / "master")
    w.enrol("north", PRED=40, ACD=10)
    yield w
    w.app.close()


async def test_a_copied_journal_reveals_no_user_id_tenant_or_campaign(
        world: World, nursery: trio.Nursery, tmp_path: Path) -> None:
    await world.start_master(nursery)
    state = tmp_path / "north"
    settings = SlaveSettings(retry_interval=0.2, connect_timeout=1.0)
    async with SlaveConnector(world.bundle("north"), state, settings=settings) as north:
        await north.wait_online()
        await north.acquire(USERS[0], "PRED", tenant=TENANT, campaign=CAMPAIGN)  # seats table
        world.stop_master()
        with trio.fail_after(5):
            while north.state == "online":
                await trio.sleep(0.01)
        await north.acquire(USERS[1], "PRED", tenant=TENANT, campaign=CAMPAIGN)  # journal
        await north.acquire(USERS[2], "ACD", tenant=TENANT, campaign=CAMPAIGN)
        await north.release(USERS[1])
        # While it runs: the WAL holds the latest pages.
        assert "journal.db-wal" in raw_files(state)
        assert found(state, SECRETS) == []
        assert {e.user for e in north.journal.pending()} == {USERS[1], USERS[2]}
    assert found(state, SECRETS) == []
    # The check can fail: the agent classes are stored in clear.
    assert found(state, ["PRED", "ACD"]) != []


def test_the_state_directory_is_0700_and_the_journals_files_0600(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    journal = Journal(state / "journal.db")
    journal.grant_offline(USERS[0], "PRED", TENANT, CAMPAIGN, T0, SeatStatus.OFFLINE)
    try:
        assert mode(state) == 0o700
        files = sorted(p.name for p in state.iterdir())
        assert files == ["journal.db", "journal.db-shm", "journal.db-wal", "journal.key"]
        assert {name: mode(state / name) for name in files} == dict.fromkeys(files, 0o600)
    finally:
        journal.close()


def test_an_existing_journal_readable_by_others_is_made_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    Journal(state / "journal.db").close()
    (state / "journal.db").chmod(0o644)
    (state / "journal.key").chmod(0o644)
    Journal(state / "journal.db").close()
    assert mode(state / "journal.db") == 0o600 and mode(state / "journal.key") == 0o600


def test_the_journal_reopens_with_every_event_seat_and_remembered_rule(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.db"
    journal = Journal(path)
    journal.hold(LocalSeat(USERS[0], "PRED", TENANT, CAMPAIGN, "17", SeatStatus.NORMAL))
    granted = journal.grant_offline(USERS[1], "ACD", TENANT, CAMPAIGN, T0, SeatStatus.OFFLINE)
    journal.release_offline(USERS[0], T0)
    journal.remember(Remembered({"PRED": 3}, 2, True, False))
    journal.close()

    again = Journal(path)
    try:
        assert again.pending() == [
            JournalEntry(1, "grant", USERS[1], "ACD", TENANT, CAMPAIGN, T0),
            JournalEntry(2, "release", USERS[0], "PRED", TENANT, CAMPAIGN, T0),
        ]
        assert again.seats() == {USERS[1]: granted}
        assert granted.seat == "offline-1"
        assert again.remembered() == Remembered({"PRED": 3}, 2, True, False)
        again.trim(2)
        assert again.count() == 0
        # Sequence numbers only grow, even after a trim.
        assert again.grant_offline(USERS[2], "PRED", "", "", T0, SeatStatus.DEMO).seat == \
            "offline-3"
    finally:
        again.close()


def test_releases_at_cut_off_carry_the_reason_on_the_wire(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db")
    try:
        journal.hold(LocalSeat(USERS[0], "PRED", TENANT, CAMPAIGN, "17", SeatStatus.NORMAL))
        journal.grant_offline(USERS[1], "PRED", "", "", T0, SeatStatus.OFFLINE)
        assert journal.release_all(T0, "site_cut_off") == [2, 3]
        assert journal.seats() == {}
        events = [offline_event(e) for e in journal.pending()]
        assert events == [
            OfflineEvent(1, "grant", USERS[1], "PRED", "", "", T0.timestamp(), ""),
            OfflineEvent(2, "release", USERS[0], "PRED", TENANT, CAMPAIGN, T0.timestamp(),
                         "site_cut_off"),
            OfflineEvent(3, "release", USERS[1], "PRED", "", "", T0.timestamp(),
                         "site_cut_off"),
        ]
    finally:
        journal.close()


def test_a_held_seat_crosses_to_the_wire_without_its_local_details() -> None:
    seat = LocalSeat(USERS[0], "PRED", TENANT, CAMPAIGN, "offline-4", SeatStatus.OFFLINE)
    assert held_seat(seat) == HeldSeat(USERS[0], "PRED", TENANT, CAMPAIGN)


def test_a_journal_copied_without_its_key_opens_with_the_sites_key_only(tmp_path: Path) -> None:
    first = tmp_path / "first"
    journal = Journal(first / "journal.db", site_secret=SITE_SECRET)
    journal.grant_offline(USERS[0], "PRED", TENANT, CAMPAIGN, T0, SeatStatus.OFFLINE)
    journal.close()
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "journal.db").write_bytes((first / "journal.db").read_bytes())

    with pytest.raises(JournalKeyError, match="cannot be read"):
        Journal(copy / "journal.db")
    with pytest.raises(JournalKeyError, match="cannot be read"):
        Journal(copy / "journal.db", site_secret=b"another site's key")
    assert not (copy / "journal.key").exists()  # a failed open creates no key

    reopened = Journal(copy / "journal.db", site_secret=SITE_SECRET)
    try:
        assert [e.user for e in reopened.pending()] == [USERS[0]]
        assert (copy / "journal.key").read_bytes() == (first / "journal.key").read_bytes()
    finally:
        reopened.close()


def test_a_journal_with_another_journals_key_file_is_not_misread(tmp_path: Path) -> None:
    one = Journal(tmp_path / "one" / "journal.db")
    one.grant_offline(USERS[0], "PRED", "", "", T0, SeatStatus.OFFLINE)
    one.close()
    Journal(tmp_path / "two" / "journal.db").close()
    (tmp_path / "one" / "journal.key").write_bytes((tmp_path / "two" / "journal.key").read_bytes())
    with pytest.raises(JournalKeyError):
        Journal(tmp_path / "one" / "journal.db")


def test_a_sealed_value_moved_to_another_row_does_not_open(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(path)
    journal.grant_offline(USERS[0], "PRED", "", "", T0, SeatStatus.OFFLINE)
    journal.grant_offline(USERS[1], "PRED", "", "", T0, SeatStatus.OFFLINE)
    journal.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE journal SET who = (SELECT who FROM journal WHERE seq = 1) WHERE seq = 2")
    db.commit()
    db.close()
    journal = Journal(path)
    try:
        with pytest.raises(JournalKeyError, match="does not open"):
            journal.pending()
    finally:
        journal.close()


def _write_schema_1(path: Path) -> None:
    """A journal as the first version wrote it: every value in clear."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(
        "CREATE TABLE journal (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL,"
        " user TEXT NOT NULL, agent_class TEXT NOT NULL, tenant TEXT NOT NULL,"
        " campaign TEXT NOT NULL, occurred_at REAL NOT NULL);"
        "CREATE TABLE seats (user TEXT PRIMARY KEY, agent_class TEXT NOT NULL,"
        " tenant TEXT NOT NULL, campaign TEXT NOT NULL, seat TEXT NOT NULL,"
        " status TEXT NOT NULL);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);")
    db.execute("INSERT INTO journal VALUES (6, 'grant', ?, 'PRED', ?, ?, ?)",
               (USERS[1], TENANT, CAMPAIGN, T0.timestamp()))
    db.execute("INSERT INTO journal VALUES (7, 'release', ?, 'PRED', ?, ?, ?)",
               (USERS[0], TENANT, CAMPAIGN, T0.timestamp()))
    db.execute("INSERT INTO seats VALUES (?, 'PRED', ?, ?, 'offline-6', 'offline')",
               (USERS[1], TENANT, CAMPAIGN))
    db.execute("INSERT INTO meta VALUES ('last_seq', 7)")
    db.close()


def test_a_journal_written_in_clear_is_sealed_on_open_and_keeps_every_event(
        tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.db"
    _write_schema_1(path)
    assert found(path.parent, SECRETS) != []  # the check can fail
    journal = Journal(path)
    try:
        assert journal.pending() == [
            JournalEntry(6, "grant", USERS[1], "PRED", TENANT, CAMPAIGN, T0),
            JournalEntry(7, "release", USERS[0], "PRED", TENANT, CAMPAIGN, T0),
        ]
        assert journal.seats() == {
            USERS[1]: LocalSeat(USERS[1], "PRED", TENANT, CAMPAIGN, "offline-6", "offline")}
        assert journal.grant_offline(USERS[2], "PRED", "", "", T0, SeatStatus.OFFLINE).seat == \
            "offline-8"
        assert found(path.parent, SECRETS) == []
    finally:
        journal.close()
    assert found(path.parent, SECRETS) == []
