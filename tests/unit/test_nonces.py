"""The at-rest cipher's nonces, drawn a few hundred at a time (ledger.persistence.codec): each
is handed out once, whatever the threads, a forked child never repeats its parent's, and
records committed many to a statement read back as written."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import pytest

from ledger import AcquireSeat, LedgerApp
from ledger.persistence.codec import RowCipher
from ledger.persistence.store import INSERT_ROWS

CIPHER = RowCipher(os.urandom(32))


def nonces(count: int) -> list[bytes]:
    return [CIPHER.seal(b"x", b"")[:RowCipher.NONCE] for _ in range(count)]


def test_nonces_are_never_handed_out_twice_across_threads() -> None:
    drawn: list[list[bytes]] = [[], [], [], []]

    def draw(into: list[bytes]) -> None:
        into.extend(nonces(5000))

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [n for into in drawn for n in into]
    assert len(every) == 20000 and len(set(every)) == 20000
    assert all(len(n) == RowCipher.NONCE for n in every)


def test_a_forked_child_does_not_take_its_parents_next_nonces() -> None:
    nonces(3)  # a pool drawn, most of it left
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        try:
            os.write(write, b"".join(nonces(10)))
        finally:
            os._exit(0)
    os.close(write)
    with open(read, "rb") as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    parent = b"".join(nonces(10))
    assert len(child) == len(parent) == 10 * RowCipher.NONCE
    size = RowCipher.NONCE
    theirs = {child[i:i + size] for i in range(0, len(child), size)}
    assert theirs.isdisjoint(parent[i:i + size] for i in range(0, len(parent), size))


def test_a_sealed_state_opens_with_its_nonce() -> None:
    stored = CIPHER.seal(b"payload", b"aad")
    assert CIPHER.open(stored, b"aad") == b"payload"


@pytest.mark.parametrize("batch", [1, INSERT_ROWS - 1, INSERT_ROWS, INSERT_ROWS + 1,
                                   3 * INSERT_ROWS + 5])
def test_a_batch_committed_many_records_to_a_statement_reads_back(
        open_ledger: Callable[..., LedgerApp], batch: int) -> None:
    app = open_ledger()
    app.issue_licence(customer="Acme", limits={"PRED": 1000})
    app.enrol_site("north")
    app.execute([AcquireSeat("north", f"u{i}", "PRED") for i in range(batch)])
    assert app.verify().ok
    assert app.replay() == app.licence
    assert sorted(app.licence.sites["north"].seats) == sorted(f"u{i}" for i in range(batch))
    pools = app.licence.pools
    app.close()
    again = open_ledger()
    assert again.licence.pools == pools and again.verify().ok
