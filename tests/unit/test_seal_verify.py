"""verify_records on rows of several originators: each originator's versions are checked on
their own however the rows interleave, and the first bad record is the one named."""

from __future__ import annotations

from uuid import UUID

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.seal.checkpoint import Checkpoint
from ledger.seal.merkle import Frontier, leaf_hash
from ledger.seal.seal import Row, VerifyReport, leaf_bytes, verify_records

A = UUID(int=1)
B = UUID(int=2)
KEY = Ed25519PrivateKey.generate()
ORIGIN = "test-ledger"


def sealed(rows: list[Row]) -> VerifyReport:
    """verify_records on plaintext ``rows`` under a seal made for them as they are: one
    signed checkpoint row at the end, and the frontier."""
    frontier = Frontier()
    for record_id, originator, version, topic, payload in rows:
        frontier.append(leaf_hash(leaf_bytes(record_id, originator, version, topic, payload)))
    root = frontier.root()
    signature = KEY.sign(Checkpoint(ORIGIN, frontier.size, root).body().encode())
    return verify_records(rows, [(frontier.size, root, signature, 0.0)], frontier.to_bytes(),
                          public_key=KEY.public_key(), origin=ORIGIN, cipher=None,
                          decode_state=lambda data: {})


def rows_of(*versions: tuple[UUID, int]) -> list[Row]:
    return [(i, originator, version, "Licence.SeatGranted", b"\x00payload %d" % i)
            for i, (originator, version) in enumerate(versions, start=1)]


def test_interleaved_originators_verify() -> None:
    report = sealed(rows_of((A, 1), (B, 1), (A, 2), (A, 3), (B, 2), (A, 4), (B, 3)))
    assert report.ok and report.records == 7


@pytest.mark.parametrize(("versions", "bad", "reason"), [
    # B's second record skips a version, after a run of A's.
    (((A, 1), (B, 1), (A, 2), (A, 3), (B, 3)), 5, f"version 3 of {B} follows version 1"),
    # A re-used a version once B's run ended.
    (((A, 1), (A, 2), (B, 1), (A, 2)), 4, f"version 2 of {A} follows version 2"),
    # Within one run.
    (((A, 1), (B, 1), (B, 2), (B, 2)), 4, f"version 2 of {B} follows version 2"),
    # The first record of an originator must be its version 1.
    (((A, 1), (B, 2)), 2, f"version 2 of {B} follows version 0"),
], ids=["skipped-after-a-run", "re-used-after-a-run", "re-used-in-a-run", "first-not-1"])
def test_the_first_out_of_order_version_is_named(
        versions: tuple[tuple[UUID, int], ...], bad: int, reason: str) -> None:
    report = sealed(rows_of(*versions))
    assert report.problem is not None
    assert report.problem.record == bad
    assert report.problem.reason.startswith(reason)
