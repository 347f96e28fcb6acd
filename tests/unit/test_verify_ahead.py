"""Verification on two cores gives the report of verification on one (ledger.seal.ahead).

The pages after the split are opened here in the same process (open_pages, what the forked
child runs); every store is checked both ways and the two reports must be equal, the
record named, the reason, the records and the root before it included. The forked child on
a real store is in tests/integration/test_verify_two_cores.py.
"""

from __future__ import annotations

import _thread
import os
from collections.abc import Callable, Iterable
from uuid import UUID

import pytest

from ledger.persistence.codec import RowCipher
from ledger.persistence.forked import can_fork
from ledger.seal.ahead import open_pages
from ledger.seal.checkpoint import Checkpoint, sign_checkpoint
from ledger.seal.seal import (
    CHECKPOINT_TOPIC_SUFFIX,
    PAGE,
    OpenedPage,
    Row,
    VerifyReport,
    originator_bytes,
    verify_records,
)
from tests.unit.test_verify_fast import CIPHER, KEY, NOTE, ORIGIN, B, store

SPLIT = 2 * PAGE
COUNT = 6 * PAGE + 300  # the split, four whole pages and a short one after it
SealRows = list[tuple[int, bytes, bytes, float]]


class RowsAhead:
    """seal.Ahead over a list of rows, opened in this process; ``keep`` cuts the opened
    pages short (as a child that failed part-way would)."""

    def __init__(self, rows: list[Row], keep: int | None = None):
        self.split = SPLIT
        self.rows = rows
        self.keep = keep
        self.opened: list[OpenedPage] = []
        self.handed = 0
        self.closed = False

    def start(self, stops: list[int]) -> None:
        originators = {row[1]: originator_bytes(row[1]) for row in self.rows}
        topics = {row[3]: row[3].encode() for row in self.rows}
        notes = {t for t in topics if t.endswith(CHECKPOINT_TOPIC_SUFFIX)}
        self.opened = open_pages(self.rows_after(SPLIT), originators, topics, notes,
                                 CIPHER._aead.decrypt, stops, SPLIT)[:self.keep]

    def pages(self) -> Iterable[OpenedPage]:
        for page in self.opened:
            self.handed += 1
            yield page

    def rows_after(self, record_id: int) -> list[Row]:
        return [row for row in self.rows if row[0] > record_id]

    def close(self) -> None:
        self.closed = True


def both(rows: list[Row], seal_rows: SealRows, frontier_state: bytes,
         keep: int | None = None) -> tuple[VerifyReport, VerifyReport, RowsAhead]:
    def check(records: list[Row], ahead: RowsAhead | None) -> VerifyReport:
        return verify_records(records, seal_rows, frontier_state, public_key=KEY.public_key(),
                              origin=ORIGIN, cipher=CIPHER,
                              decode_state=lambda data: {"note": data.decode()}, ahead=ahead)

    ahead = RowsAhead(rows, keep)
    two = check([row for row in rows if row[0] <= SPLIT], ahead)
    assert ahead.closed
    return check(rows, None), two, ahead


def altered(at: int) -> Callable[[list[Row], SealRows], None]:
    def alter(rows: list[Row], seal_rows: SealRows) -> None:
        record_id, originator, version, topic, stored = rows[at - 1]
        rows[at - 1] = (record_id, originator, version, topic, stored[:-1] + b"?")
    return alter


def removed(at: int) -> Callable[[list[Row], SealRows], None]:
    def remove(rows: list[Row], seal_rows: SealRows) -> None:
        del rows[at - 1]
    return remove


def version_reused(rows: list[Row], seal_rows: SealRows) -> None:
    at = 4 * PAGE + 7  # B's, see the store below
    rows[at - 1] = rows[at - 1][:2] + (rows[at - 1][2] - 1,) + rows[at - 1][3:]


def unsigned_row_altered(rows: list[Row], seal_rows: SealRows) -> None:
    seal_rows[:] = [(size, os.urandom(32) if size == 3100 else root, sig, at)
                    for size, root, sig, at in seal_rows]


def signature_bad(rows: list[Row], seal_rows: SealRows) -> None:
    seal_rows[:] = [(size, root, KEY.sign(b"other") if size == 4500 else sig, at)
                    for size, root, sig, at in seal_rows]


def note_wrong(rows: list[Row], seal_rows: SealRows) -> None:
    at = 3 * PAGE + 50
    record_id, originator, version, _, _ = rows[at - 1]
    wrong = sign_checkpoint(Checkpoint(ORIGIN, 3000, os.urandom(32)), ORIGIN, KEY)
    rows[at - 1] = (record_id, originator, version, NOTE, CIPHER.seal(
        b"\x00" + wrong.encode(), RowCipher.associated_data(originator, version, NOTE)))


def truncated(rows: list[Row], seal_rows: SealRows) -> None:
    del rows[5 * PAGE:]


DAMAGES: dict[str, Callable[[list[Row], SealRows], None] | None] = {
    "sound": None,
    "altered-first-after-split": altered(SPLIT + 1),
    "altered-mid-page": altered(3 * PAGE + 500),
    "altered-last": altered(COUNT),
    "altered-before-split": altered(PAGE + 3),
    "missing-first-after-split": removed(SPLIT + 1),
    "missing-at-a-page-boundary": removed(4 * PAGE + 1),
    "version-reused": version_reused,
    "unsigned-row-altered": unsigned_row_altered,
    "bad-signature": signature_bad,
    "note-disagrees": note_wrong,
    "truncated": truncated,
}


def sample(skip_versions: dict[UUID, int] | None = None) -> tuple[list[Row], SealRows, bytes]:
    """Notes before and after the split; B writes every third record of one page after it."""
    rows, seal_rows, frontier = store(
        COUNT, notes={PAGE + 10: 500, 3 * PAGE + 40: 3000, 5 * PAGE + 1: 5000},
        originator_of={i: B for i in range(4 * PAGE + 1, 5 * PAGE, 3)},
        skip_versions=skip_versions)
    return rows, seal_rows, frontier.to_bytes()


@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
def test_two_cores_report_what_one_does(damage: str) -> None:
    rows, seal_rows, state = sample()
    change = DAMAGES[damage]
    if change is not None:
        change(rows, seal_rows)
    one, two, _ = both(rows, seal_rows, state)
    assert two == one
    assert one.ok == (change is None)


def test_a_sound_store_is_taken_from_the_opened_pages() -> None:
    rows, seal_rows, state = sample()
    one, two, ahead = both(rows, seal_rows, state)
    assert one.ok and two == one
    assert (one.records, one.signed_notes) == (COUNT, 3)
    assert ahead.handed == len(ahead.opened) == 5  # all of them, none read again


def test_a_page_that_did_not_open_stops_the_opening_there() -> None:
    rows, seal_rows, state = sample()
    altered(3 * PAGE + 500)(rows, seal_rows)
    ahead = RowsAhead(rows)
    ahead.start([])
    assert [page.first_id for page in ahead.opened] == [SPLIT + 1]


@pytest.mark.parametrize("keep", [0, 2])
def test_pages_cut_short_are_verified_from_the_records(keep: int) -> None:
    """A child that opened only some pages (or failed): the rest are read and verified."""
    rows, seal_rows, state = sample()
    altered(5 * PAGE + 9)(rows, seal_rows)
    one, two, ahead = both(rows, seal_rows, state, keep=keep)
    assert two == one
    assert one.problem is not None and one.problem.record == 5 * PAGE + 9
    assert ahead.handed == keep


def test_opened_pages_are_not_used_after_a_problem_before_the_split() -> None:
    rows, seal_rows, state = sample()
    altered(PAGE + 3)(rows, seal_rows)
    one, two, ahead = both(rows, seal_rows, state)
    assert two == one and ahead.handed == 0


def test_an_originators_first_version_is_checked_where_its_page_joins() -> None:
    """B's first record, the first of a page after the split, is B's version 2: that page is
    in order in itself, only where it joins the records before it shows it."""
    rows, seal_rows, state = sample(skip_versions={B: 1})
    one, two, ahead = both(rows, seal_rows, state)
    assert two == one
    assert one.problem is not None
    assert (one.problem.record, one.problem.reason) == (
        4 * PAGE + 1, f"version 2 of {B} follows version 0: reordered, removed or re-used")
    assert ahead.handed == 3  # two accepted, the third did not follow on


def test_no_child_is_forked_while_another_thread_runs() -> None:
    """Even one not started by ``threading`` (as trio's thread cache starts its own)."""
    held, started = _thread.allocate_lock(), _thread.allocate_lock()
    held.acquire()
    started.acquire()

    def wait() -> None:
        started.release()
        held.acquire()

    _thread.start_new_thread(wait, ())
    started.acquire()
    try:
        assert not can_fork()
    finally:
        held.release()
