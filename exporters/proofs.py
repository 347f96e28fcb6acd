"""Merkle proofs for the export when only the tail of the tree is at hand.

An export covers the leaves ``[m, n)`` of the ledger's tree. The exporter does not re-read the
``m`` leaves before them: it holds the *frontier* of ``[0, m)`` (one perfect-subtree hash per
set bit of ``m``, largest first, as :class:`ledger.seal.merkle.Frontier` keeps it). That is enough
for RFC 9162's consistency proof from ``m`` to ``n``: every node the proof takes from the old
part of the tree is one of those subtrees (each left sibling on the way down is a perfect
subtree ending at or before ``m``, and the last node ends exactly at ``m``), and every other
node lies wholly in ``[m, n)``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ledger.seal.merkle import HASH_SIZE, Frontier, root_from_leaf_hashes

__all__ = ["consistency_proof_from", "frontier_from_hashes", "frontier_hashes"]


def frontier_hashes(frontier: Frontier) -> list[bytes]:
    """The frontier's subtree hashes, largest subtree first."""
    data = frontier.to_bytes()[8:]
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def frontier_from_hashes(size: int, hashes: Sequence[bytes]) -> Frontier:
    """The frontier of a tree of ``size`` leaves from its subtree hashes.

    Raises:
        ValueError: not exactly one 32-byte hash per set bit of ``size``.
    """
    if size < 0 or any(len(h) != HASH_SIZE for h in hashes):
        raise ValueError("a frontier is a size and 32-byte hashes")
    return Frontier.from_bytes(size.to_bytes(8, "big") + b"".join(hashes))


def _frontier_ranges(size: int) -> list[tuple[int, int]]:
    """The leaf ranges of the frontier's subtrees, largest first."""
    ranges = []
    start = 0
    for bit in reversed(range(size.bit_length())):
        if size >> bit & 1:
            ranges.append((start, start + (1 << bit)))
            start += 1 << bit
    return ranges


def _split(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def consistency_proof_from(old: Frontier, new_leaves: Sequence[bytes]) -> list[bytes]:
    """The RFC 9162 consistency proof from ``old.size`` leaves to ``old.size + len(new_leaves)``.

    Equal to ``ledger.seal.merkle.consistency_proof(old.size, all_leaves)`` without needing the
    old leaves.
    """
    m = old.size
    n = m + len(new_leaves)
    if m in (0, n):
        return []
    old_nodes = dict(zip(_frontier_ranges(m), frontier_hashes(old), strict=True))

    def subtree(lo: int, hi: int) -> bytes:
        if hi <= m:
            return old_nodes[(lo, hi)]
        if lo >= m:
            return root_from_leaf_hashes(new_leaves[lo - m : hi - m])
        raise AssertionError(f"a consistency proof never needs the straddling range {lo}..{hi}")

    # The loop of ledger.seal.merkle.consistency_proof, with subtree() for the hashes.
    proof: list[bytes] = []
    lo, hi, rel = 0, n, m
    whole_old_tree = True
    while rel != hi - lo:
        mid = lo + _split(hi - lo)
        if rel <= mid - lo:
            proof.append(subtree(mid, hi))
            hi = mid
        else:
            proof.append(subtree(lo, mid))
            rel -= mid - lo
            lo = mid
            whole_old_tree = False
    if not whole_old_tree:
        proof.append(subtree(lo, hi))
    proof.reverse()
    return proof
