"""Verification on two cores: a child process opens the second half of the records.

Reading, decrypting and hashing a record is most of what verifying it costs, and none of it
depends on the records before it. So, for a large store, a forked child reads the records
after ``split``, checks that each page of them (seal.PAGE records) has no gap in its ids and
each originator's versions in order inside it, decrypts them and hashes them into the
subtrees the tree needs (:class:`seal.OpenedPage`), while this process verifies the records up
to ``split`` as usual. It then checks where each opened page joins the one before (its first
id, each originator's first version), the checkpoints inside it and its recorded checkpoints,
all in record order as for records (``seal._Pages.accept``). From the first page that did not
open or does not follow on, it verifies the records themselves: the report names the same
record for the same reason as a verification on one core.

The child is a ledger.persistence.forked.Child: if it fails, its pages are simply not there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import chain, islice
from pathlib import Path
from typing import Any

from ledger.persistence import forked
from ledger.persistence.forked import Child, read_only
from ledger.persistence.store import KeyedRow, keyed_page, keyed_pages, read_lookups
from ledger.seal.merkle import leaf_hashes, subtree_levels, subtrees_for
from ledger.seal.seal import (
    CHECKPOINT_TOPIC_SUFFIX,
    PAGE,
    OpenedPage,
    Row,
    leaves,
    open_states,
    originator_bytes,
    record_heads,
)

Decrypt = Callable[[bytes, bytes, bytes], bytes]
_FETCH = 16 * PAGE


def open_pages(rows: Iterable[KeyedRow], originators: Mapping[Any, bytes],
               topics: Mapping[Any, bytes], note_topics: set[Any], decrypt: Decrypt | None,
               stops: list[int], start: int) -> list[OpenedPage]:
    """The pages of ``rows`` (the records after the first ``start``) opened one after the
    other, up to the first that does not open cleanly; ``stops`` are the tree sizes
    checked."""
    opened: list[OpenedPage] = []
    rest = iter(rows)
    size = start
    while page := list(islice(rest, PAGE)):
        one = _open_page(page, originators, topics, note_topics, decrypt, stops, size)
        if one is None:
            break
        opened.append(one)
        size += one.count
    return opened


def _open_page(page: list[KeyedRow], originators: Mapping[Any, bytes],
               topics: Mapping[Any, bytes], note_topics: set[Any], decrypt: Decrypt | None,
               stops: list[int], start: int) -> OpenedPage | None:
    ids, okeys, versions, tkeys, states = zip(*page, strict=True)
    count = len(ids)
    if (ids != tuple(range(ids[0], ids[0] + count))
            or not set(okeys).issubset(originators) or not set(tkeys).issubset(topics)):
        return None
    if okeys.count(okeys[0]) == count:  # nearly every page: the licence's records alone
        if versions != tuple(range(versions[0], versions[0] + count)):
            return None
        firsts, lasts = {okeys[0]: versions[0]}, {okeys[0]: versions[-1]}
    else:
        firsts, lasts = {}, {}
        for okey, version in zip(okeys, versions, strict=True):
            last = lasts.get(okey)
            if last is None:
                firsts[okey] = version
            elif version != last + 1:
                return None
            lasts[okey] = version
    heads = record_heads(map(originators.__getitem__, okeys), versions, tkeys, topics)
    plaintexts = open_states(decrypt, states, heads)
    if plaintexts is None:
        return None
    levels = subtree_levels(leaf_hashes(leaves(ids, heads, plaintexts)))
    inside = [stop - start for stop in stops if start < stop < start + count]
    notes = {i: plaintexts[i] for i, tkey in enumerate(tkeys) if tkey in note_topics}
    # The tree at each check, where one fails (a note's: before its record), and at the end.
    return OpenedPage(ids[0], count, firsts, lasts,
                      subtrees_for(levels, [*inside, *notes, count]), notes)


class ForkedAhead:
    """:class:`seal.Ahead` for a compact SQLite store in ``file``: the records after
    ``split`` are opened by a forked child (see the module docstring); ``rows_after``
    reads records with ``read_rows``."""

    def __init__(self, file: Path, split: int, decrypt: Decrypt | None,
                 read_rows: Callable[[int], Iterable[Row]]):
        self.split = split
        self._file = file
        self._decrypt = decrypt
        self._read_rows = read_rows
        self._child: Child | None = None
        self._started = 0.0

    def start(self, stops: list[int]) -> None:
        self._child = Child(lambda: [self._open(stops)])
        self._started = time.monotonic()

    def _open(self, stops: list[int]) -> list[OpenedPage]:
        """In the child: the pages after ``split``, through a connection of its own."""
        with read_only(self._file) as conn:
            cursor = conn.cursor()
            originators, topics = read_lookups(cursor)
            rows = chain.from_iterable(keyed_pages(
                lambda after: keyed_page(cursor, after, _FETCH), self.split, _FETCH))
            return open_pages(rows, {k: originator_bytes(v) for k, v in originators.items()},
                              {k: v.encode() for k, v in topics.items()},
                              {k for k, v in topics.items() if v.endswith(CHECKPOINT_TOPIC_SUFFIX)},
                              self._decrypt, stops, self.split)

    def pages(self) -> Iterator[OpenedPage]:
        if self._child is None:
            return iter(())
        # The child has as many records to open as this process had to verify: one that
        # takes far longer is stuck (it is killed, and the records verified from the store).
        patience = max(forked.MIN_PATIENCE, 4 * (time.monotonic() - self._started))
        opened: list[OpenedPage] = next(self._child.chunks(patience), [])
        return iter(opened)

    def rows_after(self, record_id: int) -> Iterable[Row]:
        return self._read_rows(record_id)

    def close(self) -> None:
        if self._child is not None:
            self._child.close()


__all__ = ["ForkedAhead", "open_pages"]
