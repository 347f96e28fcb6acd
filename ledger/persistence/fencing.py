"""Fenced commits: a check run inside every insert transaction, before the events are
written, so that a writer that is no longer entitled to write cannot commit.

The ledger knows nothing of who is entitled: the caller supplies a :data:`Fence`, a callable
given the transaction's cursor, which raises :class:`FencedError` (or lets a database error
through) when this process may not commit. A standby master's lease term is the intended
use: the fence reads the lease row ``FOR SHARE`` in the same transaction, so a commit either
precedes a takeover entirely or fails.

Only the PostgreSQL store is fenced (its database is shared by several masters); an SQLite
file has one host and its data directory's lock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent

from ledger.errors import StoreError
from ledger.persistence.store import SealedPostgresRecorder, persistence_env

Fence = Callable[[Any], None]
"""Called with the insert transaction's cursor before anything is inserted; raises
:class:`FencedError` when this writer may not commit."""

FENCED_RECORDER_TOPIC = "ledger.persistence.fencing:FencedPostgresRecorder"


class FencedError(StoreError):
    """The commit was refused by its fence (this writer is no longer entitled to write):
    nothing of it was recorded. Not an outage: the writer must stop writing."""


class FencedPostgresRecorder(SealedPostgresRecorder):
    """The sealed PostgreSQL recorder, running :attr:`fence` inside each insert transaction.

    The fence runs in eventsourcing's ``_insert_events`` hook, before the inserts: an
    exception there leaves the transaction block and rolls it back (an exception raised
    after the inserts would be deferred by the recorder's pipeline handling).
    """

    fence: Fence | None = None

    def _insert_events(self, curs: Any, stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> None:
        if self.fence is not None and stored_events:
            self.fence(curs)
        super()._insert_events(curs, stored_events, **kwargs)


def attach_fence(recorder: object, fence: Fence) -> None:
    """Run ``fence`` in every insert transaction of ``recorder``, a recorder opened with
    :func:`fenced_env`."""
    if not isinstance(recorder, FencedPostgresRecorder):
        raise TypeError(f"{type(recorder).__name__} cannot be fenced: open it with fenced_env")
    recorder.fence = fence


def fenced_env(url: str) -> dict[str, str]:
    """The eventsourcing environment for ``url`` with the fenced recorder.

    Raises:
        StoreError: ``url`` is not a PostgreSQL store (only a shared database is fenced).
    """
    env = persistence_env(url)
    if env.get("PERSISTENCE_MODULE") != "eventsourcing.postgres":
        raise StoreError("fenced commits need a PostgreSQL store ([store] url = "
                         "\"postgresql://...\")")
    env["APPLICATION_RECORDER_TOPIC"] = FENCED_RECORDER_TOPIC
    return env


__all__ = ["FENCED_RECORDER_TOPIC", "Fence", "FencedError", "FencedPostgresRecorder",
           "attach_fence", "fenced_env"]
