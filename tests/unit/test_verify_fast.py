"""verify_records a page at a time: the page-wise Merkle code gives the leaf-by-leaf hashes,
and a problem anywhere in a page, or at a page boundary, is named as record by record.

Each store here holds a few pages (seal.PAGE records each) of encrypted records; the report
for a store made bad in one way must name the record, and describe the tree of the records
before it, exactly as checking one record at a time would.
"""

from __future__ import annotations

import os
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.persistence.codec import RowCipher
from ledger.seal.checkpoint import Checkpoint, sign_checkpoint
from ledger.seal.merkle import (
    Frontier,
    leaf_hash,
    leaf_hashes,
    root_from_leaf_hashes,
    subtree_levels,
)
from ledger.seal.seal import PAGE, Row, VerifyReport, leaf_bytes, verify_records

A = UUID(int=1)
B = UUID(int=2)
KEY = Ed25519PrivateKey.generate()
ORIGIN = "test-ledger"
SEAT = "ledger.licence:Licence.SeatGranted"
NOTE = "ledger.licence:Licence.AuditCheckpointSigned"
CIPHER = RowCipher(os.urandom(32))
N = 2 * PAGE + 300  # two whole pages and a short last one


def hashes(count: int, salt: bytes = b"") -> list[bytes]:
    return [leaf_hash(salt + i.to_bytes(4, "big")) for i in range(count)]


# ------------------------------------------------------------------------------- merkle
def test_leaf_hashes_are_leaf_hash_of_each() -> None:
    data = [b"", b"a", b"\x00" * 200]
    assert leaf_hashes(data) == [leaf_hash(d) for d in data]


@pytest.mark.parametrize("count", [0, 1, 2, 3, 7, 8, 100, 128, 255])
def test_subtree_levels_hold_the_root_of_every_perfect_subtree(count: int) -> None:
    leaves = hashes(count)
    levels = subtree_levels(leaves)
    assert levels[0] == leaves
    for height, level in enumerate(levels):
        width = 1 << height
        assert len(level) == count // width
        for i, subtree in enumerate(level):
            assert subtree == root_from_leaf_hashes(leaves[i * width:(i + 1) * width])


@pytest.mark.parametrize("start", [0, 64, 128, 192, 1024 + 64])
@pytest.mark.parametrize("count", [0, 1, 5, 31, 32, 63, 64])
def test_extend_gives_the_frontier_of_appending_leaf_by_leaf(start: int, count: int) -> None:
    before, page = hashes(start), hashes(64, b"page")
    by_leaf, by_page = Frontier(), Frontier()
    for h in before:
        by_leaf.append(h)
        by_page.append(h)
    for h in page[:count]:
        by_leaf.append(h)
    by_page.extend(subtree_levels(page), count)
    assert by_page.to_bytes() == by_leaf.to_bytes()
    assert by_page.root() == root_from_leaf_hashes(before + page[:count])


def test_extend_refuses_a_subtree_that_would_not_start_on_its_boundary() -> None:
    frontier = Frontier()
    frontier.append(hashes(1)[0])
    with pytest.raises(ValueError, match="a subtree of 2 leaves cannot follow 1"):
        frontier.extend(subtree_levels(hashes(2)), 2)


# ---------------------------------------------------------------------- verify_records
def store(count: int = N, *, notes: dict[int, int] | None = None,
          originator_of: dict[int, UUID] | None = None, skip_versions: dict[UUID, int] | None = None
          ) -> tuple[list[Row], list[tuple[int, bytes, bytes, float]], Frontier]:
    """``count`` encrypted records of originator A (but where ``originator_of`` says), an
    unsigned checkpoint row every 100 records and a signed one every 500 and at the end.
    ``notes`` maps a record to the tree size its recorded checkpoint covers; an originator's
    first version is 1 but for ``skip_versions`` (the number of versions it skips)."""
    notes = notes or {}
    originator_of = originator_of or {}
    rows: list[Row] = []
    seal_rows: list[tuple[int, bytes, bytes, float]] = []
    frontier = Frontier()
    roots: dict[int, bytes] = {}
    versions: dict[UUID, int] = dict(skip_versions or {})
    for record_id in range(1, count + 1):
        originator = originator_of.get(record_id, A)
        version = versions[originator] = versions.get(originator, 0) + 1
        if record_id in notes:
            size = notes[record_id]
            topic = NOTE
            payload = b"\x00" + sign_checkpoint(Checkpoint(ORIGIN, size, roots[size]), ORIGIN,
                                                KEY).encode()
        else:
            topic, payload = SEAT, b"\x00seat %d" % record_id
        aad = RowCipher.associated_data(originator, version, topic)
        rows.append((record_id, originator, version, topic, CIPHER.seal(payload, aad)))
        frontier.append(leaf_hash(leaf_bytes(record_id, originator, version, topic, payload)))
        roots[record_id] = frontier.root()
        if record_id % 500 == 0 or record_id == count:
            body = Checkpoint(ORIGIN, record_id, roots[record_id]).body().encode()
            seal_rows.append((record_id, roots[record_id], KEY.sign(body), 0.0))
        elif record_id % 100 == 0:
            seal_rows.append((record_id, roots[record_id], b"", 0.0))
    return rows, seal_rows, frontier


def verify(rows: list[Row], seal_rows: list[tuple[int, bytes, bytes, float]],
           frontier: Frontier) -> VerifyReport:
    return verify_records(rows, seal_rows, frontier.to_bytes(), public_key=KEY.public_key(),
                          origin=ORIGIN, cipher=CIPHER,
                          decode_state=lambda data: {"note": data.decode()})


def tree_before(rows: list[Row], record: int) -> bytes:
    """The root over the stored records before ``record`` (as stored: leaf_bytes of the
    plaintexts)."""
    leaves = []
    for record_id, originator, version, topic, stored in rows[:record - 1]:
        payload = CIPHER.open(stored, RowCipher.associated_data(originator, version, topic))
        leaves.append(leaf_hash(leaf_bytes(record_id, originator, version, topic, payload)))
    return root_from_leaf_hashes(leaves)


def test_a_sound_store_of_several_pages_verifies() -> None:
    rows, seal_rows, frontier = store(notes={PAGE + 10: 500, 2 * PAGE: 2000})
    report = verify(rows, seal_rows, frontier)
    assert report.problem is None
    assert (report.records, report.signed_notes, report.root) == (N, 2, frontier.root())
    assert report.checkpoints == len(seal_rows)


@pytest.mark.parametrize("record", [1, 2, PAGE - 1, PAGE, PAGE + 1, 2 * PAGE + 1, N])
def test_an_altered_state_is_named_wherever_it_is_in_its_page(record: int) -> None:
    rows, seal_rows, frontier = store()
    record_id, originator, version, topic, stored = rows[record - 1]
    rows[record - 1] = (record_id, originator, version, topic, stored[:-1] + b"?")
    report = verify(rows, seal_rows, frontier)
    assert report.problem is not None
    assert (report.problem.record, report.problem.reason) == (
        record, "state fails authentication: altered, or moved from another record")
    assert report.records == record - 1
    assert report.root == tree_before(rows, record)


@pytest.mark.parametrize("record", [PAGE, PAGE + 1])
def test_a_record_missing_at_a_page_boundary_is_named(record: int) -> None:
    rows, seal_rows, frontier = store()
    del rows[record - 1]
    report = verify(rows, seal_rows, frontier)
    assert report.problem is not None
    assert (report.problem.record, report.problem.reason) == (
        record, f"missing (the next stored record is {record + 1})")
    assert report.records == record - 1


def test_the_first_problem_of_a_page_is_the_one_named() -> None:
    """An out-of-order version late in a page, an altered state earlier in it."""
    rows, seal_rows, frontier = store()
    rows[PAGE + 700] = rows[PAGE + 700][:2] + (1,) + rows[PAGE + 700][3:]
    record_id, originator, version, topic, stored = rows[PAGE + 200]
    rows[PAGE + 200] = (record_id, originator, version, topic, b"?" + stored[1:])
    report = verify(rows, seal_rows, frontier)
    assert report.problem is not None
    assert report.problem.record == PAGE + 201
    assert report.problem.reason.startswith("state fails authentication")


@pytest.mark.parametrize(("altered", "named", "reason"), [
    (1700, 1500, "the checkpoint for 1500 records has a bad signature"),
    (1400, 1400, "state fails authentication: altered, or moved from another record"),
], ids=["checkpoint-first", "record-first"])
def test_checkpoints_and_records_of_one_page_are_checked_in_record_order(
        altered: int, named: int, reason: str) -> None:
    """The signed row at 1500 has a bad signature and a record of the same page (1025-2048)
    was altered: whichever comes first is named."""
    rows, seal_rows, frontier = store()
    seal_rows = [(size, root, KEY.sign(b"other") if size == 1500 else sig, at)
                 for size, root, sig, at in seal_rows]
    record_id, originator, version, topic, stored = rows[altered - 1]
    rows[altered - 1] = (record_id, originator, version, topic, stored[:-1] + b"?")
    report = verify(rows, seal_rows, frontier)
    assert report.problem is not None
    assert (report.problem.record, report.problem.reason) == (named, reason)
    assert report.records == (1500 if named == 1500 else named - 1)


def test_a_recorded_checkpoint_is_checked_against_the_roots_before_it_in_its_page() -> None:
    """A note in the second page naming the tree size of a checkpoint row earlier in the
    same page, with another root: the note's record is named, with the tree before it."""
    rows, seal_rows, frontier = store(notes={PAGE + 100: 1100})
    record_id, originator, version, _, _ = rows[PAGE + 99]
    wrong = sign_checkpoint(Checkpoint(ORIGIN, 1100, os.urandom(32)), ORIGIN, KEY)
    aad = RowCipher.associated_data(originator, version, NOTE)
    rows[PAGE + 99] = (record_id, originator, version, NOTE,
                       CIPHER.seal(b"\x00" + wrong.encode(), aad))
    report = verify(rows, seal_rows, frontier)
    assert report.problem is not None
    assert (report.problem.record, report.problem.reason) == (
        PAGE + 100, "recorded checkpoint for 1100 records disagrees with the log")
    assert (report.records, report.signed_notes) == (PAGE + 99, 1)
    assert report.root == tree_before(rows, PAGE + 100)


def test_pages_of_several_originators_are_checked_record_by_record() -> None:
    """Every third record of the second page is B's; one of them re-uses a version."""
    rows, seal_rows, frontier = store(originator_of={i: B for i in range(PAGE + 1, 2 * PAGE, 3)})
    assert verify(rows, seal_rows, frontier).ok
    record_id, originator, version, topic, stored = rows[PAGE + 600]
    assert originator == B
    rows[PAGE + 600] = (record_id, originator, version - 1, topic, stored)
    report = verify(rows, seal_rows, frontier)
    assert report.problem is not None
    assert (report.problem.record, report.problem.reason) == (
        PAGE + 601, f"version {version - 1} of {B} follows version {version - 1}: reordered, "
                    "removed or re-used")
    assert report.records == PAGE + 600
