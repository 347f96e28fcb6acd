"""Consistency proofs from a frontier, export file names, and the manifest's schema."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporters.manifest import (
    FORMAT,
    CheckpointInfo,
    DataFile,
    Manifest,
    PreviousExport,
    RecordRange,
    decode_manifest,
    encode_manifest,
)
from exporters.naming import ExportNames, parse_name
from exporters.proofs import consistency_proof_from, frontier_from_hashes, frontier_hashes
from exporters.sinks import check_name
from ledger.seal.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
)

LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(70)]


def _frontier(leaves: list[bytes]) -> Frontier:
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    return frontier


def test_proof_from_a_frontier_equals_the_proof_from_every_leaf() -> None:
    for new in range(len(LEAVES) + 1):
        for old in range(new + 1):
            proof = consistency_proof_from(_frontier(LEAVES[:old]), LEAVES[old:new])

            assert proof == consistency_proof(old, LEAVES[:new]), (old, new)


@given(st.integers(0, 300), st.integers(0, 300))
def test_proof_from_a_frontier_verifies(old: int, extra: int) -> None:
    leaves = [leaf_hash(hashlib.sha256(i.to_bytes(4, "big")).digest()) for i in range(old + extra)]
    start = _frontier(leaves[:old])

    proof = consistency_proof_from(start, leaves[old:])

    assert verify_consistency(old, old + extra, start.root(), root_from_leaf_hashes(leaves), proof)


def test_frontier_round_trips_through_its_hashes() -> None:
    frontier = _frontier(LEAVES[:45])

    again = frontier_from_hashes(45, frontier_hashes(frontier))

    assert again.root() == frontier.root() == root_from_leaf_hashes(LEAVES[:45])
    assert frontier_from_hashes(0, []).root() == EMPTY_ROOT
    with pytest.raises(ValueError):
        frontier_from_hashes(45, frontier_hashes(frontier)[:-1])


def test_file_names_are_plain_names_a_sink_accepts_and_parse_back() -> None:
    names = ExportNames("seatledger.example/acme corp", date(2026, 3, 2))

    for name in names.upload_order:
        assert check_name(name) == name
        assert parse_name(name) is not None
        assert parse_name(name)[1] == date(2026, 3, 2)  # type: ignore[index]
    assert names.upload_order[-1] == names.manifest
    assert names.data == "seatledger-seatledger.example_acme_corp-2026-03-02.jsonl.gz.age"
    assert parse_name("notes.txt") is None
    assert parse_name("seatledger-acme-2026-02-30.manifest.json") is None


def _manifest() -> Manifest:
    return Manifest(
        format=FORMAT, origin="acme", day=date(2026, 3, 2),
        created_at=datetime(2026, 3, 3, 1, 30, tzinfo=UTC),
        records=RecordRange(first_id=1, last_id=2, count=2, by_type={"SeatGranted": 2}),
        data=DataFile(file="f", size=3, sha256="00", signature="s", jsonl_size=4,
                      jsonl_sha256="11"),
        checkpoint=CheckpointInfo(size=2, root=b"\x01" * 32, note="n", key="k"),
        previous=PreviousExport(day=None, manifest=None, manifest_sha256=None, size=0,
                                root=EMPTY_ROOT),
        start_frontier=[], consistency_proof=[b"\x02" * 32],
    )


def test_manifest_round_trips_as_indented_json() -> None:
    data = encode_manifest(_manifest())

    assert decode_manifest(data) == _manifest()
    assert data.endswith(b"\n") and b'\n  "origin": "acme",\n' in data


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json", "malformed manifest"),
        (b'{"format": "seatledger-audit-export/1"}', "missing required field"),
        (encode_manifest(_manifest()).replace(FORMAT.encode(), b"other/9"), "unsupported"),
        (encode_manifest(_manifest()).replace(b'"count": 2', b'"count": "2"'), "Expected `int`"),
    ],
)
def test_malformed_manifests_are_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        decode_manifest(data)
