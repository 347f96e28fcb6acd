"""RFC 9162 Merkle hashing and proofs, against published vectors and a reference model."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.seal.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from tests.strategies import leaf_data

# --- Published vectors -------------------------------------------------------------------
# transparency-dev/merkle, testonly/constants.go (commit 582a6ad190b6848f1d26f8bf08ddef29955d9db1):
# LeafInputs, NodeHashes, RootHashes, CompactTrees. The same tree as the RFC 6962 vectors in
# google/certificate-transparency's merkle_tree_test.

LEAF_INPUTS = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
LEAVES = [leaf_hash(data) for data in LEAF_INPUTS]


def h(hex_digest: str) -> bytes:
    return bytes.fromhex(hex_digest)


# NodeHashes()[level][index]
NODE_HASHES = [
    [
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
        h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
        h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
        h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
    ],
    [
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
    ],
    [
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ],
    [h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]

# RootHashes(), indexed by tree size 0..8.
ROOTS = [
    h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]

# CompactTrees(): the subtree hashes of the left edge, largest first, per tree size 0..8.
_nh = NODE_HASHES
COMPACT_TREES = [
    [],
    [_nh[0][0]],
    [_nh[1][0]],
    [_nh[1][0], _nh[0][2]],
    [_nh[2][0]],
    [_nh[2][0], _nh[0][4]],
    [_nh[2][0], _nh[1][2]],
    [_nh[2][0], _nh[1][2], _nh[0][6]],
    [_nh[3][0]],
]

# transparency-dev/merkle, proof/verify_test.go (commit 02194e9afb6c1d95b5381350007963aa70fff472):
# inclusionProofs (leaf numbers there are 1-based; converted to 0-based indexes here).
INCLUSION_PROOFS = [
    (0, 1, []),
    (
        0,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]

# Same file: consistencyProofs (old size, new size, proof).
CONSISTENCY_PROOFS = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]


# --- Reference model: RFC 9162 2.1.1, 2.1.3.1 and 2.1.4.1 written as the RFC states them ---


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = _k(len(d))
    if m <= k:
        return ref_subproof(m, d[:k], b) + [ref_mth(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [ref_mth(d[:k])]


def leaves_of(n: int) -> list[bytes]:
    # Distinct leaves, so a proof for one index can never pass for another.
    return [leaf_hash(b"record %d" % i) for i in range(n)]


def flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


# --- Hashing and roots ---------------------------------------------------------------------


def test_leaf_hashes_match_published_vectors() -> None:
    assert LEAVES == NODE_HASHES[0]


def test_node_hash_matches_published_level_one() -> None:
    assert [node_hash(LEAVES[i], LEAVES[i + 1]) for i in range(0, 8, 2)] == NODE_HASHES[1]


def test_empty_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT == ROOTS[0]
    assert root_from_leaf_hashes([]) == ROOTS[0]


@pytest.mark.parametrize("size", range(9))
def test_root_matches_published_root_for_each_size(size: int) -> None:
    assert root_from_leaf_hashes(LEAVES[:size]) == ROOTS[size]


@pytest.mark.parametrize("size", range(9))
def test_frontier_matches_published_root_and_compact_range(size: int) -> None:
    frontier = Frontier()
    for leaf in LEAVES[:size]:
        frontier.append(leaf)
    assert frontier.size == size
    assert frontier.root() == ROOTS[size]
    assert frontier.to_bytes() == size.to_bytes(8, "big") + b"".join(COMPACT_TREES[size])


@given(leaf_data)
def test_root_matches_rfc_definition(data: list[bytes]) -> None:
    hashes = [leaf_hash(d) for d in data]
    assert root_from_leaf_hashes(hashes) == ref_mth(hashes)


@given(st.integers(0, 1000), st.integers(0, 1000))
def test_frontier_root_equals_root_of_all_leaves(n: int, midway: int) -> None:
    hashes = leaves_of(n)
    midway = min(midway, n)
    frontier = Frontier()
    for leaf in hashes[:midway]:
        frontier.append(leaf)
    assert frontier.root() == root_from_leaf_hashes(hashes[:midway])
    for leaf in hashes[midway:]:
        frontier.append(leaf)
    assert frontier.size == n
    assert frontier.root() == root_from_leaf_hashes(hashes)


def test_frontier_root_equals_root_of_all_leaves_at_every_size_up_to_300() -> None:
    hashes = leaves_of(300)
    frontier = Frontier()
    for i, leaf in enumerate(hashes):
        assert frontier.root() == root_from_leaf_hashes(hashes[:i]), i
        frontier.append(leaf)


@given(st.integers(0, 600), st.integers(0, 50))
def test_frontier_survives_a_bytes_round_trip_and_copy(n: int, more: int) -> None:
    hashes = leaves_of(n + more)
    frontier = Frontier()
    for leaf in hashes[:n]:
        frontier.append(leaf)
    restored = Frontier.from_bytes(frontier.to_bytes())
    twin = frontier.copy()
    assert restored.size == twin.size == n
    for leaf in hashes[n:]:
        restored.append(leaf)
        twin.append(leaf)
    assert restored.root() == twin.root() == root_from_leaf_hashes(hashes)
    assert frontier.size == n  # the copy and the restored frontier are independent


def test_frontier_from_bytes_rejects_a_hash_count_that_does_not_match_the_size() -> None:
    frontier = Frontier()
    for leaf in LEAVES[:7]:
        frontier.append(leaf)
    data = frontier.to_bytes()
    for bad in (
        data[:-1],
        data[:-32],
        data + bytes(32),
        data[:7],
        (8).to_bytes(8, "big") + data[8:],
    ):
        with pytest.raises(ValueError, match="frontier"):
            Frontier.from_bytes(bad)


def test_frontier_rejects_a_leaf_hash_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Frontier().append(b"short")


def test_frontier_and_level_hashing_agree_at_a_million_leaves() -> None:
    hashes = leaves_of(1 << 20)
    frontier = Frontier()
    for leaf in hashes:
        frontier.append(leaf)
    assert root_from_leaf_hashes(hashes) == frontier.root()


# --- Inclusion proofs ------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_PROOFS)
def test_inclusion_proof_matches_published_vector(
    index: int, size: int, proof: list[bytes]
) -> None:
    assert inclusion_proof(index, LEAVES[:size]) == proof
    assert verify_inclusion(index, size, LEAVES[index], proof, ROOTS[size])


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_PROOFS)
def test_published_inclusion_proof_fails_when_tampered(
    index: int, size: int, proof: list[bytes]
) -> None:
    root, leaf = ROOTS[size], LEAVES[index]
    assert not verify_inclusion(index, size, leaf, proof, ROOTS[0])
    assert not verify_inclusion(index, size, leaf_hash(b"wrong leaf"), proof, root)
    assert not verify_inclusion(index, size, leaf, [*proof, root], root)
    assert not verify_inclusion(index, size, leaf, [root, *proof], root)
    if proof:
        assert not verify_inclusion(index, size, leaf, proof[:-1], root)
    if index + 1 < size:
        assert not verify_inclusion(index + 1, size, leaf, proof, root)
    if size > 1:
        assert not verify_inclusion(index, size * 2, leaf, proof, root)


@given(st.data(), st.integers(1, 300))
def test_every_inclusion_proof_matches_rfc_and_verifies(data: st.DataObject, n: int) -> None:
    hashes = leaves_of(n)
    root = root_from_leaf_hashes(hashes)
    index = data.draw(st.integers(0, n - 1), label="index")
    proof = inclusion_proof(index, hashes)
    assert proof == ref_path(index, hashes)
    assert verify_inclusion(index, n, hashes[index], proof, root)


@given(st.data(), st.integers(2, 300))
def test_inclusion_proof_with_a_flipped_byte_or_other_root_fails(
    data: st.DataObject, n: int
) -> None:
    hashes = leaves_of(n)
    root = root_from_leaf_hashes(hashes)
    index = data.draw(st.integers(0, n - 1), label="index")
    proof = inclusion_proof(index, hashes)
    which = data.draw(st.integers(0, len(proof) - 1), label="element")
    byte = data.draw(st.integers(0, 31), label="byte")
    tampered = [*proof[:which], flip(proof[which], byte), *proof[which + 1 :]]
    assert not verify_inclusion(index, n, hashes[index], tampered, root)
    assert not verify_inclusion(index, n, flip(hashes[index], byte), proof, root)
    assert not verify_inclusion(index, n, hashes[index], proof, flip(root, byte))
    assert not verify_inclusion(index, n, hashes[index], proof, root_from_leaf_hashes(hashes[:-1]))
    other = data.draw(st.integers(0, n - 1).filter(lambda i: i != index), label="other")
    assert not verify_inclusion(other, n, hashes[index], proof, root)


@pytest.mark.parametrize(("index", "size"), [(-1, 4), (4, 4), (0, 0)])
def test_inclusion_rejects_an_index_outside_the_tree(index: int, size: int) -> None:
    with pytest.raises(ValueError, match="outside a tree of size"):
        inclusion_proof(index, LEAVES[:size])
    with pytest.raises(ValueError, match="outside a tree of size"):
        verify_inclusion(index, size, LEAVES[0], [], ROOTS[size])


# --- Consistency proofs ----------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_PROOFS)
def test_consistency_proof_matches_published_vector(old: int, new: int, proof: list[bytes]) -> None:
    assert consistency_proof(old, LEAVES[:new]) == proof
    assert verify_consistency(old, new, ROOTS[old], ROOTS[new], proof)


@pytest.mark.parametrize(("old", "new", "proof"), [p for p in CONSISTENCY_PROOFS if p[2]])
def test_published_consistency_proof_fails_when_tampered(
    old: int, new: int, proof: list[bytes]
) -> None:
    r1, r2 = ROOTS[old], ROOTS[new]
    assert not verify_consistency(old, new, r2, r1, proof)
    assert not verify_consistency(old, new, r1, r2, [])
    assert not verify_consistency(old, new, r1, r2, proof[:-1])
    assert not verify_consistency(old, new, r1, r2, [*proof, r2])
    assert not verify_consistency(old, new, r1, r2, [proof[0], *proof])
    if old > 1:
        assert not verify_consistency(old - 1, new, r1, r2, proof)
    assert not verify_consistency(old + 1, new, r1, r2, proof)
    assert not verify_consistency(old, new * 2, r1, r2, proof)


def test_consistency_from_empty_or_equal_trees_needs_no_proof() -> None:
    assert consistency_proof(0, LEAVES) == []
    assert consistency_proof(8, LEAVES) == []
    assert verify_consistency(0, 8, EMPTY_ROOT, ROOTS[8], [])
    assert verify_consistency(8, 8, ROOTS[8], ROOTS[8], [])
    assert not verify_consistency(8, 8, ROOTS[8], ROOTS[7], [])
    assert not verify_consistency(8, 8, ROOTS[8], ROOTS[8], [EMPTY_ROOT])
    assert not verify_consistency(0, 8, ROOTS[1], ROOTS[8], [])


@given(st.data(), st.integers(1, 300))
def test_every_consistency_proof_matches_rfc_and_verifies(data: st.DataObject, n: int) -> None:
    hashes = leaves_of(n)
    old = data.draw(st.integers(1, n), label="old size")
    proof = consistency_proof(old, hashes)
    assert proof == (ref_subproof(old, hashes, True) if old < n else [])
    assert verify_consistency(
        old, n, root_from_leaf_hashes(hashes[:old]), root_from_leaf_hashes(hashes), proof
    )


@given(st.data(), st.integers(2, 300))
def test_consistency_proof_with_a_flipped_byte_or_other_root_fails(
    data: st.DataObject, n: int
) -> None:
    hashes = leaves_of(n)
    old = data.draw(st.integers(1, n - 1), label="old size")
    old_root, new_root = root_from_leaf_hashes(hashes[:old]), root_from_leaf_hashes(hashes)
    proof = consistency_proof(old, hashes)
    which = data.draw(st.integers(0, len(proof) - 1), label="element")
    byte = data.draw(st.integers(0, 31), label="byte")
    tampered = [*proof[:which], flip(proof[which], byte), *proof[which + 1 :]]
    assert not verify_consistency(old, n, old_root, new_root, tampered)
    assert not verify_consistency(old, n, flip(old_root, byte), new_root, proof)
    assert not verify_consistency(old, n, old_root, flip(new_root, byte), proof)
    # A rewritten history: same sizes, one earlier record changed.
    changed = data.draw(st.integers(0, old - 1), label="changed record")
    forged = [*hashes[:changed], leaf_hash(b"forged"), *hashes[changed + 1 :]]
    forged_root = root_from_leaf_hashes(forged)
    assert not verify_consistency(old, n, old_root, forged_root, proof)
    assert not verify_consistency(old, n, old_root, forged_root, consistency_proof(old, forged))


def test_consistency_rejects_an_old_size_beyond_the_new_one() -> None:
    with pytest.raises(ValueError, match="old size 9 is outside 0..8"):
        consistency_proof(9, LEAVES)
    with pytest.raises(ValueError, match="old size -1"):
        consistency_proof(-1, LEAVES)
    with pytest.raises(ValueError, match="old size 9 is outside 0..8"):
        verify_consistency(9, 8, ROOTS[8], ROOTS[8], [])
