"""Merkle tree hashing, inclusion and consistency proofs as in RFC 9162 section 2.1.

The audit seal hashes every stored record into a leaf (``leaf_hash``) and keeps a
:class:`Frontier` -- the roots of the perfect subtrees on the tree's left edge -- so the
root can be advanced one record at a time without re-reading history. Proofs are built
from the full list of leaf hashes, which only the verifier of an export holds.

A verifier re-reading many records adds them a page at a time instead: ``leaf_hashes``
hashes the page's leaves, ``subtree_levels`` the perfect subtrees over them level by level,
and :meth:`Frontier.extend` appends any prefix of the page as the few subtrees that make
it up. Those are the hashes appending leaf by leaf computes, with the calls made by map()
rather than by a Python statement per hash.

Leaf indexes are 0-based. Functions raise :class:`ValueError` for arguments that cannot
describe a tree (an index outside it, an old size larger than the new one); verifiers
return ``False`` for any proof that does not check out.
"""

from __future__ import annotations

import hashlib
import operator
from collections import deque
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import Protocol

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Frontier",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "leaf_hashes",
    "node_hash",
    "root_from_leaf_hashes",
    "subtree_levels",
    "subtrees_for",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
_sha256 = hashlib.sha256
EMPTY_ROOT = _sha256(b"").digest()
# Hashes already fed RFC 9162's domain-separation byte, for _hash_each to copy.
_LEAF = _sha256(b"\x00")
_NODE = _sha256(b"\x01")
_copy, _update, _digest = type(_LEAF).copy, type(_LEAF).update, type(_LEAF).digest


def leaf_hash(data: bytes) -> bytes:
    """Hash of a leaf: SHA-256(0x00 || data)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash of an interior node: SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def leaf_hashes(leaves: Sequence[bytes]) -> list[bytes]:
    """``leaf_hash`` of each of ``leaves``."""
    return _hash_each(_LEAF, leaves, len(leaves))


def _parents(level: Sequence[bytes]) -> list[bytes]:
    """The node hashes over each pair of consecutive hashes of ``level`` (0 and 1, 2 and 3,
    ...); an odd last hash has none."""
    pairs = iter(level)
    return _hash_each(_NODE, map(operator.add, pairs, pairs), len(level) // 2)


def _hash_each(seeded: hashlib._Hash, messages: Iterable[bytes], count: int) -> list[bytes]:
    """The SHA-256 of what ``seeded`` was fed followed by each of ``count`` ``messages``.

    Hashing short messages one Python statement at a time costs more in the interpreter
    than in SHA-256: here map() makes the calls, and each hash starts as a copy of one
    already fed its first byte, which is quicker than a new hash object (that looks the
    digest up in OpenSSL every time).
    """
    hashers = list(map(_copy, repeat(seeded, count)))
    deque(map(_update, hashers, messages), maxlen=0)  # update() returns None: just run it
    return list(map(_digest, hashers))


def subtree_levels(leaf_hashes: Sequence[bytes]) -> list[list[bytes]]:
    """The roots of the perfect subtrees over ``leaf_hashes``, height by height.

    ``levels[h][i]`` is the root of the leaves ``i * 2**h`` to ``(i + 1) * 2**h - 1``
    (``levels[0]`` the leaves themselves); :meth:`Frontier.extend` takes its subtrees from
    here.
    """
    levels = [list(leaf_hashes)]
    while len(levels[-1]) > 1:
        levels.append(_parents(levels[-1]))
    return levels


class Level(Protocol):
    """One height of :func:`subtree_levels`: the subtree hashes by index (all of them, or
    some, as :func:`subtrees_for` keeps them)."""

    def __getitem__(self, index: int, /) -> bytes: ...


Levels = Sequence[Level]


def subtrees_for(levels: Sequence[Sequence[bytes]], counts: Iterable[int]) -> list[dict[int, bytes]]:
    """Of ``levels`` (from :func:`subtree_levels`), the subtrees :meth:`Frontier.extend`
    takes to add the first ``count`` leaves, for each of ``counts``, by height and index."""
    kept: list[dict[int, bytes]] = [{} for _ in levels]
    for count in counts:
        for height in range(count.bit_length()):
            if count >> height & 1:
                index = (count >> height) - 1
                kept[height][index] = levels[height][index]
    return kept


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash (MTH) of a list of leaf hashes; ``EMPTY_ROOT`` for none.

    Hashing level by level and carrying an odd last node up unchanged builds the same
    tree as RFC 9162's split at the largest power of two below n.
    """
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    while len(level) > 1:
        paired = _parents(level)
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (for ``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


class Frontier:
    """The compact range ``[0, size)``: one subtree hash per set bit of ``size``.

    Hashes are held largest subtree first, so appending merges from the right, like
    incrementing a binary counter: one node hash per append on average. A perfect subtree of
    ``2**h`` leaves merges in the same way, at its height, where the size is a multiple of
    its width (:meth:`extend`).
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def append(self, leaf_hash: bytes) -> None:
        """Add the next leaf's hash.

        Raises:
            ValueError: ``leaf_hash`` is not a 32-byte hash.
        """
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, not {len(leaf_hash)}")
        self._push(leaf_hash, 0)

    def extend(self, levels: Levels, count: int) -> None:
        """Add the first ``count`` leaves of ``levels`` (from :func:`subtree_levels`).

        They join as the perfect subtrees that make up their range, one per set bit of
        ``count``, largest first: the size must be a multiple of the largest, so that each
        lands on its own boundary. Pages of ``2**k`` leaves added from size 0 always do
        (and so does a shorter last page).

        Raises:
            ValueError: the size is not a multiple of the largest subtree's width.
        """
        for height in reversed(range(count.bit_length())):
            if count >> height & 1:
                self._push(levels[height][(count >> height) - 1], height)

    def _push(self, subtree: bytes, height: int) -> None:
        """Add the root of the next ``2**height`` leaves: the carry of a binary counter."""
        if self._size & ((1 << height) - 1):
            raise ValueError(f"a subtree of {1 << height} leaves cannot follow {self._size}")
        hashes = self._hashes
        carry = subtree
        n = self._size >> height
        while n & 1:
            carry = _sha256(b"\x01" + hashes.pop() + carry).digest()
            n >>= 1
        hashes.append(carry)
        self._size += 1 << height

    def root(self) -> bytes:
        """The tree's root hash: equal to ``root_from_leaf_hashes`` of every leaf appended."""
        if not self._hashes:
            return EMPTY_ROOT
        root = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            root = node_hash(left, root)
        return root

    def copy(self) -> Frontier:
        """An independent frontier with the same leaves."""
        twin = Frontier()
        twin._size = self._size
        twin._hashes = list(self._hashes)
        return twin

    def to_bytes(self) -> bytes:
        """8-byte big-endian size, then each subtree hash, largest subtree first."""
        return self._size.to_bytes(8, "big") + b"".join(self._hashes)

    @classmethod
    def from_bytes(cls, data: bytes) -> Frontier:
        """Rebuild a frontier written by :meth:`to_bytes`.

        Raises:
            ValueError: ``data`` is not a size followed by exactly one hash per set bit.
        """
        if len(data) < 8:
            raise ValueError(f"a frontier is at least 8 bytes, got {len(data)}")
        size = int.from_bytes(data[:8], "big")
        expected = 8 + HASH_SIZE * size.bit_count()
        if len(data) != expected:
            raise ValueError(f"a frontier of size {size} is {expected} bytes, got {len(data)}")
        frontier = cls()
        frontier._size = size
        frontier._hashes = [data[i : i + HASH_SIZE] for i in range(8, len(data), HASH_SIZE)]
        return frontier

    def __repr__(self) -> str:
        return f"Frontier(size={self._size}, root={self.root().hex()})"


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """The audit path (RFC 9162 2.1.3.1) for leaf ``index`` in the tree of ``leaf_hashes``.

    Raises:
        ValueError: ``index`` is not a leaf of the tree.
    """
    size = len(leaf_hashes)
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    proof: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            proof.append(root_from_leaf_hashes(leaf_hashes[mid:hi]))
            hi = mid
        else:
            proof.append(root_from_leaf_hashes(leaf_hashes[lo:mid]))
            lo = mid
    # Collected from the root down; the proof lists siblings from the leaf up.
    proof.reverse()
    return proof


def consistency_proof(old_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """The proof (RFC 9162 2.1.4.1) that the first ``old_size`` leaves are a prefix.

    ``leaf_hashes`` is every leaf of the new tree. The proof is empty when ``old_size``
    is 0 or the whole tree.

    Raises:
        ValueError: ``old_size`` is negative or larger than the tree.
    """
    size = len(leaf_hashes)
    if not 0 <= old_size <= size:
        raise ValueError(f"old size {old_size} is outside 0..{size} (the new tree's size)")
    if old_size in (0, size):
        return []
    proof: list[bytes] = []
    lo, hi, m = 0, size, old_size
    whole_old_tree = True  # SUBPROOF's flag b: the old tree's root is known to the verifier.
    while m != hi - lo:
        mid = lo + _split(hi - lo)
        if m <= mid - lo:
            proof.append(root_from_leaf_hashes(leaf_hashes[mid:hi]))
            hi = mid
        else:
            proof.append(root_from_leaf_hashes(leaf_hashes[lo:mid]))
            m -= mid - lo
            lo = mid
            whole_old_tree = False
    if not whole_old_tree:
        proof.append(root_from_leaf_hashes(leaf_hashes[lo:hi]))
    proof.reverse()
    return proof


def _all_hashes(hashes: Sequence[bytes]) -> bool:
    return all(len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``proof`` shows leaf ``index`` with ``leaf_hash`` is in the tree ``root``.

    The RFC 9162 2.1.3.2 algorithm.

    Raises:
        ValueError: ``index`` is not a leaf of a tree of ``size`` leaves.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    if len(leaf_hash) != HASH_SIZE or not _all_hashes(proof):
        return False
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows the tree ``old_root`` is a prefix of the tree ``new_root``.

    The RFC 9162 2.1.4.2 algorithm. Equal sizes need an empty proof and equal roots;
    an empty old tree needs an empty proof and ``EMPTY_ROOT``.

    Raises:
        ValueError: a size is negative or ``old_size > new_size``.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"old size {old_size} is outside 0..{new_size} (the new size)")
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if not proof or not _all_hashes(proof):
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        # The old tree is a perfect subtree of the new one: its root starts the path.
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
